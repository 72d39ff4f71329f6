"""Orientation and scale of the lattice in the crop: candidates the Bragg spots cannot tell apart,
the spectral search, and the start poses of every fit."""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter, map_coordinates

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.stacking import Pose, Stacking
from vdwstack.structures.materials import get_material
from vdwstack.structures.pixel_size import reflections


def rotation_period_deg(material: str, twist: bool = False) -> float:
    """Period of the in-plane rotations that leave the model's image unchanged (up to a shift).

    With a fixed slip D only the identity and, when the monolayer has it, the 180° rotation do
    (it maps D to −D, a layer relabelling): any other rotation g of the monolayer turns the model
    of D into that of g·D, a different reading of the same symmetry class. A reading is reported as
    the canonical representative of its class, so the other orientations must be tried, not folded
    away: 180° for even-order monolayers (ReX2), 360° for 3-fold ones (2H MX2). For twists the
    layers' relative translation is fitted anyway, so the monolayer's own period suffices.
    """
    order = get_material(material).rotation_order
    if twist:
        return 360.0 / order
    return 180.0 if order % 2 == 0 else 360.0


def rotation_candidates_deg(material: str, rotation_deg: float, tol: float = 0.05,
                            twist: bool = False) -> list[float]:
    """In-plane rotations the Bragg-spot positions cannot tell apart, starting from `rotation_deg`.

    Rotations by 60°·k that map the lattice onto itself within `tol` (relative; ReX2 is nearly
    hexagonal), taken modulo :func:`rotation_period_deg` (180° for ReX2; 360° for 2H MX2 slips,
    whose 120° rotations change the reading D to an equivalent g·D; 120° for 2H MX2 twists).
    """
    lat = get_material(material).lattice_2d
    period = rotation_period_deg(material, twist)
    out = []
    for k in range(6):
        ang = 60.0 * k
        if ang >= period - 1e-9:
            break
        t = np.deg2rad(ang)
        R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        frac = np.linalg.solve(lat.T, (lat @ R.T).T).T
        err = np.linalg.norm((frac - np.round(frac)) @ lat, axis=1) / np.linalg.norm(lat, axis=1)
        if np.all(err < tol):
            out.append(float(rotation_deg + ang))
    return out


def spectral_orientation(image: np.ndarray, pixel_size_A: float, material: str,
                         scale_range: tuple[float, float] = (0.85, 1.15), max_px: int = 512
                         ) -> tuple[float, float, float] | None:
    """(rotation_deg, scale = true / nominal pixel size, contrast) of the lattice, from the image's
    power spectrum; None when no lattice stands out.

    Every hypothesis (rotation φ, scale s) predicts where each reciprocal-lattice vector g of the
    material lands (q = p·s·R(φ)·g); its score is the mean of the log power above the smooth
    background there (bilinear, on a 2× zero-padded spectrum), weighted by the reflection's
    expected strength. Unlike a spot-strength correlation this does not depend on the slip (which
    modulates the bilayer's spot strengths) and it uses every resolved reflection, so it also works
    on small fields where the first-order spots are only a few pixels from the centre. Coarse grid
    (0.5°, 1 %) over 180° and `scale_range`, then a fine one (0.1°, 0.2 %) around the best.
    contrast: best score over the median score of all hypotheses (pure noise ≈ 1).
    """
    
    img = np.asarray(image, np.float64)
    H, W = img.shape
    n = min(H, W, max_px)
    n -= n % 2
    img = img[(H - n) // 2:(H - n) // 2 + n, (W - n) // 2:(W - n) // 2 + n]
    N = 2 * n
    pad = np.zeros((N, N))
    pad[:n, :n] = (img - img.mean()) * np.outer(np.hanning(n), np.hanning(n))
    ps = np.log(np.abs(np.fft.fftshift(scipy.fft.fft2(pad))) ** 2 + 1e-30)
    rel = np.clip(ps - gaussian_filter(ps, N / 24), 0, None)
    g, e = reflections(material)
    c = N // 2
    p = float(pixel_size_A)

    def scores(scales, phis):
        S, PH = (a.ravel() for a in np.meshgrid(scales, phis, indexing="ij"))
        cos, sin = np.cos(PH)[:, None], np.sin(PH)[:, None]
        qx = p * S[:, None] * (cos * g[None, :, 0] - sin * g[None, :, 1])
        qy = p * S[:, None] * (sin * g[None, :, 0] + cos * g[None, :, 1])
        r = np.hypot(qx, qy)
        w = np.where((r < 0.45) & (r * n > 1.5), e[None], 0.0)
        o = map_coordinates(rel, [qy.ravel() * N + c, qx.ravel() * N + c], order=1, mode="constant")
        return S, PH, (o.reshape(qx.shape) * w).sum(1) / np.maximum(w.sum(1), 1e-12)

    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    S, PH, sc = scores(np.exp(np.arange(lo, hi + 1e-9, 0.01)), np.deg2rad(np.arange(0.0, 180.0, 0.5)))
    i = int(np.argmax(sc))
    contrast = float(sc[i] / max(np.median(sc), 1e-12))
    if not np.isfinite(contrast) or contrast < 1.5:
        return None
    s0, phi0 = S[i], PH[i]
    S, PH, sc = scores(s0 * np.exp(np.arange(-0.012, 0.0121, 0.002)), phi0 + np.deg2rad(np.arange(-0.6, 0.61, 0.1)))
    i = int(np.argmax(sc))
    return float(np.rad2deg(PH[i])), float(S[i]), contrast



def initial_poses(comp: Comparator, image: np.ndarray | None, image_pixel_size_A: float,
                  stacking: Stacking, twist: bool = False) -> list[Pose]:
    """Starting poses: every rotation the Bragg spots cannot tell apart (or, without spots, the best
    few of a 2.5° rotation scan), scale from the spots (:func:`spectral_orientation`, within ±15 %
    of the given pixel size: :mod:`vdwstack.structures.pixel_size`'s ±25 % search picks wrong scales on small
    ReX2 fields whose first-order spots lie within a few pixels of the spectrum's centre)."""
    orient = spectral_orientation(image, image_pixel_size_A, comp.material) if image is not None else None
    df0 = float(np.median(comp.settings.defocus_A))
    fwhm0 = float(np.mean(comp.settings.source_fwhm_range_A))
    if orient is not None:
        rot, scale, _ = orient
        if not 0.85 < scale < 1.15:
            scale = 1.0
        return [Pose(r, scale, df0, fwhm0) for r in rotation_candidates_deg(comp.material, rot, twist=twist)]
    period = rotation_period_deg(comp.material, twist)
    scan = [Pose(float(r), 1.0, df0, fwhm0) for r in np.arange(0.0, period, 2.5)]
    scored = sorted(scan, key=lambda p: -comp.evaluate(stacking, p).agreement)
    return scored[:3]
