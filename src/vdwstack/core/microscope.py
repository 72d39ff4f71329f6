"""The microscope of an image: beam energy, probe aperture, aberrations, source size, ADF detector.

:class:`Optics` is the one owner of the microscope's settings and their defaults (those of the
paper's simulations: 300 kV, 21.3 mrad, ADF 39–200 mrad, defocus 35 Å, source 0.6 Å FWHM): the
structures table, the simulations, the closed loop, the CLI and the config schema take them from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from vdwstack.core.settings import setting


@dataclass(frozen=True)
class Optics:
    """STEM optics of one image.

    Attributes:
        energy_eV: beam energy (eV).
        semiangle_mrad: probe-forming aperture semi-angle (mrad).
        defocus_A: defocus (Å), abTEM convention (positive = underfocus, focus below the
            entrance surface); C10 = −defocus_A.
        Cs_A: spherical aberration C30 (Å).
        source_fwhm_A: FWHM of the Gaussian effective source (Å).
        adf_inner_mrad, adf_outer_mrad: ADF detector collection angles (mrad).
        adf_z_exponent_shift: the incoherent model's cross-sections are scaled by (Z/30)^shift.
            The elastic cross-section into the annulus gives Mo/S ≈ 5.8 (≈ Z^1.8) at 39–200 mrad;
            real HAADF contrast, mostly thermal diffuse scattering, ranges over ~Z^1.5–Z^2 with the
            detector and the specimen. Drawn per sample, it keeps networks from reading the
            metal/chalcogen contrast of one model as the stacking (a twist network trained at one
            ratio read 9° moirés as 51° at Z^1.7). Multislice computes the Z-dependence itself and
            ignores it.
        astigmatism_A, astigmatism_angle_deg: two-fold astigmatism C12 (Å) and its azimuth φ12
            (degrees); a negative C12 is the same astigmatism turned by 90°.
        coma_A, coma_angle_deg: axial coma C21 (Å) and its azimuth φ21 (degrees).
            A corrected probe keeps C12 within ~10 Å and C21 within a few hundred Å; drawn per
            sample they keep networks from reading a probe's asymmetry as the stacking.
        aberrations: further abTEM aberration coefficients (e.g. {"C23": 100.0, "phi23": 0.3});
            lengths in Å, angles in rad; a C12/C21 given here replaces the scalar fields'.
    """

    energy_eV: float = setting(300e3, "beam energy (eV)")
    semiangle_mrad: float = setting(21.3, "probe-forming aperture semi-angle (mrad)")
    defocus_A: float = setting(35.0, "defocus (Å; positive = underfocus)")
    Cs_A: float = setting(0.0, "spherical aberration C30 (Å)")
    source_fwhm_A: float = setting(0.6, "effective source size, FWHM (Å)")
    adf_inner_mrad: float = setting(39.0, "ADF detector inner angle (mrad)")
    adf_outer_mrad: float = setting(200.0, "ADF detector outer angle (mrad)")
    astigmatism_A: float = setting(0.0, "two-fold astigmatism C12 (Å; negative = turned by 90°)")
    astigmatism_angle_deg: float = setting(0.0, "azimuth of the astigmatism φ12 (degrees)")
    coma_A: float = setting(0.0, "axial coma C21 (Å)")
    coma_angle_deg: float = setting(0.0, "azimuth of the coma φ21 (degrees)")
    adf_z_exponent_shift: float = setting(0.0, "incoherent model: ADF cross-sections × (Z/30)^shift, the spread "
                                               "of real Z-contrast (~Z^1.5–Z^2; multislice ignores it)")
    aberrations: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if isinstance(self.aberrations, dict):
            object.__setattr__(self, "aberrations", tuple(sorted(self.aberrations.items())))
        checks = {
            "energy_eV": self.energy_eV > 0,
            "semiangle_mrad": self.semiangle_mrad > 0,
            "source_fwhm_A": self.source_fwhm_A >= 0,
            "adf_inner_mrad": self.adf_inner_mrad >= 0,
            "adf_outer_mrad": self.adf_outer_mrad > self.adf_inner_mrad,
            "adf_z_exponent_shift": abs(self.adf_z_exponent_shift) <= 1.0,
        }
        for name, ok in checks.items():
            if not ok or not np.isfinite(getattr(self, name)):
                raise ValueError(f"invalid optics setting {name}={getattr(self, name)!r}")

    @property
    def wavelength_A(self) -> float:
        from abtem.core.energy import (
            energy2wavelength,  # relativistic λ (lazy: abTEM is heavy)
        )

        return float(energy2wavelength(self.energy_eV))

    @property
    def aperture_k(self) -> float:
        """Aperture radius in spatial frequency (1/Å)."""
        return self.semiangle_mrad * 1e-3 / self.wavelength_A

    @property
    def source_sigma_A(self) -> float:
        return self.source_fwhm_A / (2 * np.sqrt(2 * np.log(2)))

    def abtem_aberrations(self) -> dict[str, float]:
        """Cs, C12/φ12 and C21/φ21 (Å, rad) and the further `aberrations`, as abTEM's keywords."""
        out = {"Cs": self.Cs_A}
        if self.astigmatism_A:
            out.update(C12=self.astigmatism_A, phi12=float(np.deg2rad(self.astigmatism_angle_deg)))
        if self.coma_A:
            out.update(C21=self.coma_A, phi21=float(np.deg2rad(self.coma_angle_deg)))
        out.update(dict(self.aberrations))
        return out

    def with_defocus(self, defocus_A: float) -> Optics:
        return replace(self, defocus_A=float(defocus_A))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aberrations"] = dict(self.aberrations)
        return d

    @classmethod
    def from_mapping(cls, m) -> Optics:
        """From a dict or table row; missing fields keep their defaults."""
        kw = {k: float(m[k]) for k in cls.__dataclass_fields__ if k != "aberrations" and k in m}
        ab = m.get("aberrations", {}) if hasattr(m, "get") else {}
        return cls(**kw, aberrations=tuple(sorted(dict(ab or {}).items())))




#: Scalar microscope settings and their defaults, in the order of the structures table's columns.
MICROSCOPE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Optics) if f.name != "aberrations"}


def fixed_microscope(microscope) -> dict[str, float]:
    """Single values of a microscope block whose entries may be [min, max] ranges (their midpoint),
    over the defaults: what an image of that microscope was most likely taken with."""
    out = dict(MICROSCOPE_DEFAULTS)
    for k, v in dict(microscope or {}).items():
        out[k] = float(np.mean(v)) if isinstance(v, (list, tuple)) else float(v)
    return out
