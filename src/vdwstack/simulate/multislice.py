"""High-fidelity ADF-STEM with abTEM's own algorithms: multislice and PRISM (GPU when present)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from vdwstack.core.settings import setting
from vdwstack.simulate.optics import Optics, psf_radius_A

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultisliceSettings:
    """Numerical settings of abTEM (lengths in Å).

    potential_sampling_A: real-space sampling of the potential and wave; must resolve the
        detector's outer angle (checked).
    slice_thickness_A: multislice slice thickness.
    frozen_phonons: number of frozen-phonon configurations (0 = static lattice).
    prism_interpolation: PRISM interpolation factor (method "prism" only).
    device: "auto" (GPU when CuPy sees one), "cpu" or "gpu".
    """

    potential_sampling_A: float = setting(0.03, "potential sampling (Å); must reach adf_outer_mrad (checked)",
                                          exclusiveMinimum=0)
    slice_thickness_A: float = setting(1.0, "multislice slice thickness (Å)", exclusiveMinimum=0)
    frozen_phonons: int = setting(0, "frozen-phonon configurations (0: static lattice)", minimum=0)
    prism_interpolation: int = setting(1, "PRISM interpolation factor", minimum=1)
    device: str = setting("auto", "auto (GPU when CuPy sees one) | cpu | gpu", enum=["auto", "cpu", "gpu"])


def max_scattering_angle_mrad(optics: Optics, sampling_A: float) -> float:
    """Largest scattering angle (mrad) represented after abTEM's 2/3 antialiasing aperture."""
    import abtem

    cutoff = abtem.config.get("antialias.cutoff")
    return 1e3 * optics.wavelength_A * cutoff / (2 * sampling_A)


def check_sampling(optics: Optics, settings: MultisliceSettings) -> None:
    """Raise ValueError naming the setting when the sampling cannot reach the detector's outer angle."""
    reach = max_scattering_angle_mrad(optics, settings.potential_sampling_A)
    if reach < optics.adf_outer_mrad:
        need = optics.wavelength_A * 2 / 3 / (2 * optics.adf_outer_mrad * 1e-3)
        raise ValueError(
            f"multislice.potential_sampling_A={settings.potential_sampling_A} Å only reaches "
            f"{reach:.0f} mrad, below the ADF outer angle adf_outer_mrad={optics.adf_outer_mrad:g}: "
            f"use ≤ {need:.4f} Å"
        )


def resolve_device(device: str) -> str:
    if device in ("cpu", "gpu"):
        return device
    try:
        import cupy  # noqa: F401

        return "gpu" if cupy.cuda.runtime.getDeviceCount() > 0 else "cpu"
    except Exception:
        return "cpu"


def _padded_box(atoms: Atoms, shape_px: tuple[int, int], p: float, margin: float, periodic: bool) -> Atoms:
    """A copy of `atoms` in abTEM's periodic box: the field of view (H·p × W·p Å) plus `margin` Å
    on every side, atoms outside dropped (or, when `periodic`, the atoms' own cell, checked to
    hold the field of view). The copy is shifted by `margin` in x, y and set 2 Å above the
    box's bottom with 2 Å of vacuum on top."""
    H, W = shape_px
    atoms = atoms.copy()
    pos = atoms.positions
    keep = (
        (pos[:, 0] >= -margin) & (pos[:, 0] < W * p + margin)
        & (pos[:, 1] >= -margin) & (pos[:, 1] < H * p + margin)
    )
    if periodic:
        box_x, box_y = atoms.cell[0, 0], atoms.cell[1, 1]
        if box_x < W * p - 1e-9 or box_y < H * p - 1e-9:
            raise ValueError(f"periodic cell {box_x:.2f}x{box_y:.2f} Å is smaller than the field of view")
    else:
        atoms = atoms[keep]
        box_x, box_y = W * p + 2 * margin, H * p + 2 * margin
    zmin = atoms.positions[:, 2].min()
    atoms.positions[:, 0] += margin
    atoms.positions[:, 1] += margin
    atoms.positions[:, 2] += 2.0 - zmin
    atoms.set_cell([box_x, box_y, atoms.positions[:, 2].max() + 2.0])
    atoms.pbc = True
    return atoms


def _potential(atoms: Atoms, settings: MultisliceSettings, thermal_rms_A: dict[str, float] | None, seed: int):
    """abTEM's (Lobato, infinite-projection) potential of the atoms, over frozen-phonon
    configurations when settings ask for them (thermal_rms_A: element → rms displacement, Å)."""
    import abtem

    if settings.frozen_phonons > 0:
        sigmas = dict(thermal_rms_A or {})
        atoms_or_fp = abtem.FrozenPhonons(atoms, num_configs=settings.frozen_phonons, sigmas=sigmas, seed=seed)
    else:
        atoms_or_fp = atoms
    return abtem.Potential(
        atoms_or_fp,
        sampling=settings.potential_sampling_A,
        slice_thickness=settings.slice_thickness_A,
        projection="infinite",
        parametrization="lobato",
    )


def _scan_grid(optics: Optics, p: float, margin: float, shape_px: tuple[int, int]):
    """The probe positions and the extension `ext` (pixels) added on every side.

    Probe positions lie on the pixel grid (abTEM arrays are [x, y]), extended by the source
    blur's reach so that the blur needs no boundary condition, then cropped.
    """
    import abtem

    H, W = shape_px
    ext = int(np.ceil(4 * optics.source_sigma_A / p))
    scan = abtem.GridScan(
        start=(margin - ext * p, margin - ext * p),
        end=(margin + (W + ext) * p, margin + (H + ext) * p),
        sampling=p,
        endpoint=False,
    )
    return scan, ext


def _measure(method: str, potential, scan, optics: Optics, settings: MultisliceSettings):
    """The lazy ADF measurement of the scan, by multislice or by PRISM (whose lens aberrations
    are applied as a CTF to the scattering matrix)."""
    import abtem

    aberrations = optics.abtem_aberrations()
    detector = abtem.AnnularDetector(inner=optics.adf_inner_mrad, outer=optics.adf_outer_mrad)
    if method == "multislice":
        probe = abtem.Probe(
            energy=optics.energy_eV, semiangle_cutoff=optics.semiangle_mrad, defocus=optics.defocus_A, **aberrations
        )
        probe.grid.match(potential)
        return probe.scan(potential, scan=scan, detectors=detector)
    smatrix = abtem.SMatrix(
        potential=potential,
        energy=optics.energy_eV,
        semiangle_cutoff=optics.semiangle_mrad,
        interpolation=settings.prism_interpolation,
    )
    ctf = abtem.CTF(defocus=optics.defocus_A, semiangle_cutoff=optics.semiangle_mrad, energy=optics.energy_eV,
                    **aberrations)
    return smatrix.scan(scan=scan, detectors=detector, ctf=ctf)


def _to_image(measurement, device: str, optics: Optics, p: float, ext: int, shape_px: tuple[int, int]) -> np.ndarray:
    """Compute the measurement and return the float32 (H, W) image, [row, col]: frozen phonons
    averaged, the source size applied as a Gaussian blur, the scan's extension cropped."""
    from scipy.ndimage import gaussian_filter

    H, W = shape_px
    arr = np.asarray(measurement.compute().array)
    if device == "gpu":
        import cupy

        arr = cupy.asnumpy(arr)
    if arr.ndim > 2:  # frozen-phonon ensemble
        arr = arr.reshape(-1, *arr.shape[-2:]).mean(axis=0)
    img = arr.T
    if optics.source_sigma_A > 0:
        img = gaussian_filter(img, optics.source_sigma_A / p, mode="nearest", truncate=4.0)
    return img[ext:ext + H, ext:ext + W].astype(np.float32)


def simulate_abtem(
    atoms: Atoms,
    optics: Optics,
    pixel_size_A: float,
    shape_px: tuple[int, int],
    method: str = "multislice",
    settings: MultisliceSettings = MultisliceSettings(),
    thermal_rms_A: dict[str, float] | None = None,
    seed: int = 0,
    periodic: bool = False,
) -> np.ndarray:
    """ADF-STEM image of `atoms` (image frame, Å) by abTEM multislice or PRISM.

    The probe is scanned on the pixel grid x = col·p, y = row·p of an image of ``shape_px``.
    By default ``atoms`` must cover the field of view plus a margin of the probe's radius (atoms
    outside the margin are dropped; abTEM's potential is periodic over that box). With
    ``periodic=True`` the atoms' cell is taken as an exactly periodic supercell holding the field
    of view (much cheaper for small crystals). The source size is applied as a Gaussian blur.

    Returns:
        float32 (H, W): fraction of the beam reaching the detector, indexed [row, col].
    """
    import abtem

    if method not in ("multislice", "prism"):
        raise ValueError(f"method must be 'multislice' or 'prism', got {method!r}")
    check_sampling(optics, settings)
    device = resolve_device(settings.device)
    abtem.config.set({"device": device, "diagnostics.progress_bar": False})
    p = float(pixel_size_A)
    margin = 0.0 if periodic else psf_radius_A(optics)
    box = _padded_box(atoms, shape_px, p, margin, periodic)
    potential = _potential(box, settings, thermal_rms_A, seed)
    scan, ext = _scan_grid(optics, p, margin, shape_px)
    measurement = _measure(method, potential, scan, optics, settings)
    return _to_image(measurement, device, optics, p, ext, shape_px)
