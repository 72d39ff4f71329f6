"""Fast incoherent ADF-STEM imaging (the physics of Kirkland's incostem) built from abTEM pieces.

image(r) = Σ_layers [ Σ_j σ_Zj · G_j(r − r_j) ] ⊛ PSF_layer(r)

- σ_Z: ADF cross-section of element Z (abTEM scattering factors, averaged over incident directions
  inside the aperture), in Å²;
- G_j: Gaussian of the atom's thermal RMS displacement and the effective source size, deposited
  analytically at the exact sub-pixel position (never snapped to pixels);
- PSF_layer(r) = I_probe(−r) with the probe's defocus shifted by the layer's depth.

The output is the fraction of the beam scattered onto the detector (dimensionless), float32,
indexed [row, col] = [y, x] with x = col·p, y = row·p.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from vdwstack.simulate.optics import (
    Optics,
    adf_cross_section_A2,
    probe_intensity,
    psf_radius_A,
)
from vdwstack.structures.materials import get_material

log = logging.getLogger(__name__)

# Largest deconvolution gain tolerated when the physical blur is narrower than what the pixel grid
# can carry without aliasing (only reached with a near-zero source size and coarse pixels).
_MAX_DECONV_GAIN = 50.0


@dataclass
class RenderJob:
    """One image to render: atoms in the image frame plus optics.

    positions_A: (N, 3) Cartesian positions in Å (x, y in the image frame; z along the beam).
    symbols: (N,) element symbols.
    layer: (N,) layer index 0..L-1 (used for the per-layer defocus).
    layer_z_A: (L,) depth of each layer's midplane (Å), increasing along the beam.
    thermal_rms_A: per-element 1-D RMS thermal displacement (Å).
    """

    positions_A: np.ndarray
    symbols: np.ndarray
    layer: np.ndarray
    layer_z_A: np.ndarray
    optics: Optics
    thermal_rms_A: dict[str, float]


def alias_free_sigma_A(pixel_size_A: float, optics: Optics) -> float:
    """Smallest Gaussian width (Å) whose sampled copies alias < 1e-4 into the probe's band."""
    k_band = 2 * optics.aperture_k  # probe intensity transfer vanishes beyond twice the aperture
    k_alias = 1.0 / pixel_size_A - k_band
    if k_alias <= 0.2 * k_band:
        raise ValueError(
            f"pixel_size_A={pixel_size_A} is too coarse for a {optics.semiangle_mrad} mrad probe at "
            f"{optics.energy_eV / 1e3:g} kV: use pixels smaller than {1 / (1.2 * k_band):.3f} Å"
        )
    return 0.7 / k_alias


def padding_px(optics: Optics, pixel_size_A: float, layer_depths_A: Sequence[float] = (0.0,)) -> int:
    """Margin (pixels) around the field of view that holds every atom reaching it through the PSF."""
    r = max(psf_radius_A(optics, optics.defocus_A - z) for z in layer_depths_A)
    # Rounded up to a multiple of 16 px so that nearby optics share grid sizes (and FFT plans).
    return int(np.ceil((r / pixel_size_A + 2) / 16.0) * 16)


def _deposit(job: RenderJob, pixel_size_A: float, grid_shape: tuple[int, int], origin_A: tuple[float, float],
             sigma_base_A: float, u_min: float, out: np.ndarray) -> None:
    """Add σ_Z·G(r − r_j) of every atom of `job` into out[layer] (units 1/Å² · Å² = 1/Å² weights)."""
    p = pixel_size_A
    H, W = grid_shape
    sym = np.asarray(job.symbols)
    uniq = np.unique(sym)
    xs = (job.positions_A[:, 0] - origin_A[0]) / p  # in pixels
    ys = (job.positions_A[:, 1] - origin_A[1]) / p
    weights = np.empty(len(sym))
    sig = np.empty(len(sym))
    for el in uniq:
        m = sym == el
        weights[m] = adf_cross_section_A2(el, job.optics)
        u = job.thermal_rms_A.get(el, u_min)
        sig[m] = np.sqrt(sigma_base_A**2 + max(u**2 - u_min**2, 0.0)) / p
    half = int(np.ceil(4.0 * sig.max())) if len(sig) else 1
    offs = np.arange(-half, half + 2)
    cx = np.floor(xs).astype(np.int64)[:, None] + offs[None]  # (N, w)
    cy = np.floor(ys).astype(np.int64)[:, None] + offs[None]
    norm = 1.0 / (np.sqrt(2 * np.pi) * sig)[:, None]
    gx = norm * np.exp(-0.5 * ((cx - xs[:, None]) / sig[:, None]) ** 2)  # per pixel (1/px)
    gy = norm * np.exp(-0.5 * ((cy - ys[:, None]) / sig[:, None]) ** 2)
    gx[(cx < 0) | (cx >= W)] = 0.0
    gy[(cy < 0) | (cy >= H)] = 0.0
    np.clip(cx, 0, W - 1, out=cx)
    np.clip(cy, 0, H - 1, out=cy)
    vals = (weights / p**2)[:, None, None] * gy[:, :, None] * gx[:, None, :]  # density 1/Å² ×Å²
    flat = cy[:, :, None] * W + cx[:, None, :]
    layer = np.asarray(job.layer, np.int64)
    flat = flat + (layer * H * W)[:, None, None]
    L = out.shape[0]
    out += np.bincount(flat.ravel(), weights=vals.ravel(), minlength=L * H * W).reshape(L, H, W)


@lru_cache(maxsize=32)
def _psf_otf(optics: Optics, pixel_size_A: float, n_psf: int, shape: tuple[int, int]) -> np.ndarray:
    """Transfer function (rfft2) of the probe intensity as the point-spread function on the padded
    grid, cached: fits render many images with the same optics."""
    Hp, Wp = shape
    psf = probe_intensity(optics, pixel_size_A, n_psf)
    # Embed the wrapped probe into the padded grid; PSF(r) = I(−r) ⇒ FT is the conjugate.
    big = np.zeros((Hp, Wp))
    h = n_psf // 2
    big[:h + 1, :h + 1] = psf[:h + 1, :h + 1]
    big[:h + 1, Wp - (n_psf - h - 1):] = psf[:h + 1, h + 1:]
    big[Hp - (n_psf - h - 1):, :h + 1] = psf[h + 1:, :h + 1]
    big[Hp - (n_psf - h - 1):, Wp - (n_psf - h - 1):] = psf[h + 1:, h + 1:]
    otf = np.conj(scipy.fft.rfft2(big))
    otf.setflags(write=False)
    return otf


def render_incoherent(
    jobs: Sequence[RenderJob],
    pixel_size_A: float,
    shape_px: tuple[int, int],
    per_layer_defocus: bool = True,
    workers: int = 1,
    quiet: bool = False,
) -> np.ndarray:
    """Render a batch of incoherent ADF-STEM images.

    Args:
        jobs: images to render (atoms in the image frame, optics).
        pixel_size_A: output pixel size (Å/px).
        shape_px: output (height, width) in pixels.
        per_layer_defocus: shift each layer's focus by its depth (raises agreement with multislice).
        workers: threads for the FFTs.
        quiet: a blur below the grid's resolution is logged at debug level (coarse fitting grids).

    Returns:
        float32 array (B, H, W): fraction of the incident beam reaching the ADF detector.
    """
    H, W = shape_px
    if H < 1 or W < 1:
        raise ValueError(f"image shape must be positive, got {shape_px}")
    p = float(pixel_size_A)
    out = np.empty((len(jobs), H, W), np.float32)
    for b, job in enumerate(jobs):
        optics = job.optics
        depths = np.asarray(job.layer_z_A, float) - float(np.min(job.layer_z_A))
        if not per_layer_defocus:
            depths = np.zeros_like(depths)
        pad = padding_px(optics, p, depths)
        Hp = scipy.fft.next_fast_len(H + 2 * pad, real=True)
        Wp = scipy.fft.next_fast_len(W + 2 * pad, real=True)
        origin = (-pad * p, -pad * p)
        sigma_base = alias_free_sigma_A(p, optics)
        us = [job.thermal_rms_A.get(str(s), 0.0) for s in np.unique(job.symbols)] or [0.0]
        u_min = float(min(us))
        L = len(depths)
        dens = np.zeros((L, Hp, Wp))
        _deposit(job, p, (Hp, Wp), origin, sigma_base, u_min, dens)

        # Remaining common Gaussian blur (source + smallest thermal RMS − deposited width).
        s2 = optics.source_sigma_A**2 + u_min**2 - sigma_base**2
        ky = np.fft.fftfreq(Hp, d=p)[:, None]
        kx = np.fft.rfftfreq(Wp, d=p)[None, :]
        k2 = kx**2 + ky**2
        if s2 < 0:
            gain = np.exp(-2 * np.pi**2 * s2 * (2 * optics.aperture_k) ** 2)
            if gain > _MAX_DECONV_GAIN:
                (log.debug if quiet else log.warning)("blur below the pixel grid's resolution: image is %.3f Å wider", np.sqrt(-s2))
                s2 = 0.0
        gauss = np.exp(-2 * np.pi**2 * s2 * k2)

        F = scipy.fft.rfft2(dens, workers=workers)
        acc = np.zeros((Hp, Wp // 2 + 1), np.complex128)
        n_psf = scipy.fft.next_fast_len(2 * pad + 1)
        for li, z in enumerate(depths):
            acc += F[li] * _psf_otf(optics.with_defocus(optics.defocus_A - z), p, n_psf, (Hp, Wp))
        img = scipy.fft.irfft2(acc * gauss, s=(Hp, Wp), workers=workers) * p**2
        out[b] = img[pad:pad + H, pad:pad + W]
    return out


def job_from_atoms(atoms, optics: Optics, material: str, layer_z_A: np.ndarray | None = None) -> RenderJob:
    """RenderJob from ase.Atoms whose ``tags`` hold the layer number (1-based; 0 → one layer)."""
    tags = atoms.get_tags()
    layer = np.maximum(tags - 1, 0)
    if layer_z_A is None:
        n = int(layer.max()) + 1 if len(layer) else 1
        z = atoms.positions[:, 2]
        layer_z_A = np.array([z[layer == k].mean() if np.any(layer == k) else 0.0 for k in range(n)])
    return RenderJob(
        positions_A=atoms.positions,
        symbols=np.array(atoms.get_chemical_symbols()),
        layer=layer,
        layer_z_A=np.asarray(layer_z_A, float),
        optics=optics,
        thermal_rms_A=dict(get_material(material).thermal_rms_A),
    )
