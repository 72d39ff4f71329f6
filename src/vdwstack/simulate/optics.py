"""Microscope optics for incoherent ADF-STEM: probe intensity (abTEM) and ADF cross-sections.

The microscope's parameters (:class:`vdwstack.core.microscope.Optics`) are shared by every stage;
this module turns them into the probe and the detector's cross-sections.
Units: energy in eV, angles in mrad, lengths in Å, spatial frequencies k in 1/Å (angle = λ·k).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from vdwstack.core.microscope import Optics

# Electron rest energy (eV), for the relativistic mass factor of the scattering amplitude.
_MC2_EV = 510998.95

__all__ = ["Optics", "adf_cross_section_A2", "detector_efficiency", "probe_intensity", "psf_radius_A"]


def _lens_area(R: float, r: float, d: np.ndarray) -> np.ndarray:
    """Overlap area of a circle of radius R at the origin and one of radius r at distance d."""
    d = np.asarray(d, float)
    out = np.zeros_like(d)
    small, big = min(R, r), max(R, r)
    inside = d <= big - small
    out[inside] = np.pi * small**2
    part = (d > big - small) & (d < R + r)
    dd = d[part]
    a1 = np.arccos(np.clip((dd**2 + R**2 - r**2) / (2 * dd * R), -1, 1))
    a2 = np.arccos(np.clip((dd**2 + r**2 - R**2) / (2 * dd * r), -1, 1))
    out[part] = R**2 * (a1 - np.sin(2 * a1) / 2) + r**2 * (a2 - np.sin(2 * a2) / 2)
    return out


def detector_efficiency(k: np.ndarray, optics: Optics, average_incidence: bool = True) -> np.ndarray:
    """Probability that an electron scattered by spatial frequency k (1/Å) hits the ADF annulus.

    With ``average_incidence`` the incident direction is averaged uniformly over the probe
    aperture (a tilted incident electron reaches the detector after a smaller deflection), else
    the on-axis annulus indicator is used.
    """
    lam = optics.wavelength_A
    k_in, k_out = optics.adf_inner_mrad * 1e-3 / lam, optics.adf_outer_mrad * 1e-3 / lam
    k = np.asarray(k, float)
    if not average_incidence:
        return ((k >= k_in) & (k <= k_out)).astype(float)
    k_ap = optics.aperture_k
    ap_area = np.pi * k_ap**2
    return (_lens_area(k_out, k_ap, k) - _lens_area(k_in, k_ap, k)) / ap_area


@lru_cache(maxsize=256)
def _cross_section_cached(
    symbol: str, energy_eV: float, semiangle_mrad: float, inner: float, outer: float, average: bool, param: str
) -> float:
    from abtem.parametrizations import validate_parametrization

    optics = Optics(energy_eV=energy_eV, semiangle_mrad=semiangle_mrad, adf_inner_mrad=inner, adf_outer_mrad=outer)
    lam = optics.wavelength_A
    k_hi = outer * 1e-3 / lam + optics.aperture_k
    k = np.linspace(0.0, k_hi, 20001)
    f = validate_parametrization(param).scattering_factor(symbol)(k**2)  # Å, non-relativistic
    gamma = 1.0 + energy_eV / _MC2_EV
    w = detector_efficiency(k, optics, average_incidence=average)
    integrand = (gamma * f) ** 2 * w * 2 * np.pi * k
    # dΩ = λ² d²k: cross-section in Å².
    return float(lam**2 * np.trapezoid(integrand, k))


def adf_cross_section_A2(
    symbol: str, optics: Optics, average_incidence: bool = True, parametrization: str = "lobato"
) -> float:
    """Scattering cross-section (Å²) of one atom into the ADF annulus.

    ∫ |γ f(k)|² P_det(k) dΩ with f from abTEM's parametrization (Lobato & Van Dyck by default),
    γ the relativistic mass factor and P_det from :func:`detector_efficiency`; times
    (Z/30)^``optics.adf_z_exponent_shift`` (the spread of real Z-contrast, see :class:`Optics`).
    """
    from ase.data import atomic_numbers

    scale = (atomic_numbers[symbol] / 30.0) ** optics.adf_z_exponent_shift
    return scale * _cross_section_cached(
        symbol,
        float(optics.energy_eV),
        float(optics.semiangle_mrad),
        float(optics.adf_inner_mrad),
        float(optics.adf_outer_mrad),
        bool(average_incidence),
        parametrization,
    )


def psf_radius_A(optics: Optics, defocus_A: float | None = None) -> float:
    """Radius (Å) beyond which the probe intensity is negligible (< ~1e-4 of the total)."""
    alpha = optics.semiangle_mrad * 1e-3
    df = optics.defocus_A if defocus_A is None else defocus_A
    cs = abs(optics.Cs_A) * alpha**3
    astig, coma = abs(optics.astigmatism_A) * alpha, abs(optics.coma_A) * alpha**2  # geometric blur (Å)
    return 10.0 + 2.0 * abs(df) * alpha + 2.0 * cs + 2.0 * astig + 3.0 * coma + 4.0 * optics.source_sigma_A


@lru_cache(maxsize=64)
def _probe_intensity_cached(optics: Optics, pixel_size_A: float, n_px: int) -> np.ndarray:
    import abtem

    abtem.config.set({"diagnostics.progress_bar": False})
    aberrations = optics.abtem_aberrations()
    probe = abtem.Probe(
        energy=optics.energy_eV,
        semiangle_cutoff=optics.semiangle_mrad,
        defocus=optics.defocus_A,
        sampling=pixel_size_A,
        gpts=(n_px, n_px),
        device="cpu",
        **aberrations,
    )
    # abTEM's default FFT is FFTW with FFTW_MEASURE plans, chosen by timing: the bits of the
    # result then change from process to process. NumPy's FFT keeps simulations bit-identical.
    with abtem.config.set({"fft": "numpy"}):
        wave = probe.build(scan=(0.0, 0.0), lazy=False).array
    intensity = np.abs(np.asarray(wave)) ** 2
    intensity /= intensity.sum() * pixel_size_A**2  # ∫ I d²r = 1  →  1/Å²
    # abTEM arrays are indexed [x, y]; ours are [row=y, col=x].
    return intensity.T.astype(np.float64)


def probe_intensity(optics: Optics, pixel_size_A: float, n_px: int | None = None) -> np.ndarray:
    """Probe intensity (1/Å², integrates to 1) centred on pixel (0, 0) with wrap-around.

    Indexed [row, col] = [y, x]. The grid is n_px × n_px at ``pixel_size_A``; by default just
    large enough to hold the probe (see :func:`psf_radius_A`).
    """
    if n_px is None:
        n_px = scipy.fft.next_fast_len(int(np.ceil(2 * psf_radius_A(optics) / pixel_size_A)) + 1)
    return _probe_intensity_cached(optics, float(pixel_size_A), int(n_px))
