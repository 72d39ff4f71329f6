"""Training-time augmentation of labelled images for the regressors.

Labels live in the lattice frame, so in-plane rotations keep them; scale jitter is bounded so that
the model's pixel size stays meaningful; everything else (contrast, blur, noise, scan distortions,
contamination) imitates the microscope. Mirror flips only where the lattice has a mirror line (2H MX2),
with the targets mapped (:attr:`TargetCodec.mirror_permutation`): a mirrored ReS2 image is another lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vdwstack.core.images import normalize_unit
from vdwstack.regress.spline import SplineImages
from vdwstack.drit.data import crop_geometry, random_crop
from vdwstack.simulate.degrade import Degradation, degrade


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random augmentations (each drawn uniformly per image)."""

    rotate: bool = True
    scale_jitter: float = 0.05
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_A: tuple[float, float] = (0.0, 0.15)
    dose_e_per_A2: tuple[float, float] | None = (1e5, 1e7)  # log-uniform; None = no shot noise
    gaussian_noise: tuple[float, float] = (0.0, 0.1)
    scanline_jitter_px: tuple[float, float] = (0.0, 0.5)
    contamination_probability: float = 0.3
    mirror: bool = False  # half the crops flipped (lattices with a mirror line only; targets mapped)

    @classmethod
    def off(cls) -> Augmentation:
        return cls(rotate=False, scale_jitter=0.0, contrast=(1, 1), gamma=(1, 1), blur_A=(0, 0),
                   dose_e_per_A2=None, gaussian_noise=(0, 0), scanline_jitter_px=(0, 0), contamination_probability=0)


def random_crops(images: SplineImages, index: np.ndarray, size: int, rng: np.random.Generator,
                 rotate: bool = True, scale_jitter: float = 0.0) -> np.ndarray:
    """size×size crops of the images `index` [B] → float32 [B, size, size], each rotated by a random
    angle and rescaled by 1 ± scale_jitter (cubic spline), sampled inside its image (no padding
    enters a crop). The batched counterpart of :func:`vdwstack.drit.data.random_crop`: the same
    placements (:func:`vdwstack.drit.data.crop_geometry`), interpolated together."""
    angle, scale, cy, cx = crop_geometry(images.shape[1:], size, len(index), rng, rotate, scale_jitter)
    plain = (angle == 0.0) & (scale == 1.0)
    cy[plain] = np.floor(cy[plain] - size / 2) + (size - 1) / 2  # integer pixels: the image itself
    cx[plain] = np.floor(cx[plain] - size / 2) + (size - 1) / 2
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(t, t, indexing="ij")

    def per_crop(a: np.ndarray) -> torch.Tensor:  # [B] → [B, 1, 1], broadcast over the crop
        return torch.as_tensor(a, dtype=torch.float32)[:, None, None]

    sc, c, s = per_crop(scale), per_crop(np.cos(angle)), per_crop(np.sin(angle))
    rows = per_crop(cy) + sc * (s * xx + c * yy)
    cols = per_crop(cx) + sc * (c * xx - s * yy)
    return images.sample(index, rows, cols).numpy()


def augment(image: np.ndarray, pixel_size_A: float, crop_px: int, aug: Augmentation,
            rng: np.random.Generator, raw_intensity: bool = True) -> np.ndarray:
    """One augmented, normalized ([−1, 1]) crop of `image` (see :func:`augment_crop`)."""
    crop = random_crop(image, crop_px, rng, rotate=aug.rotate, scale_jitter=aug.scale_jitter)
    return augment_crop(crop, pixel_size_A, aug, rng, raw_intensity)


def augment_crop(crop: np.ndarray, pixel_size_A: float, aug: Augmentation, rng: np.random.Generator,
                 raw_intensity: bool = True) -> np.ndarray:
    """The microscope-like augmentations of one crop [H, W] at `pixel_size_A` Å/px → float32 in
    [−1, 1]: blur, shot and read noise, scan-line jitter, contamination, gamma and contrast.

    ``raw_intensity``: the crop is a clean simulation in beam fractions (shot noise applies);
    translated (experiment-like) images already carry noise, so only mild noise is added.
    """
    if aug.blur_A[1] > 0:
        s = rng.uniform(*aug.blur_A) / pixel_size_A
        if s > 0.05:
            crop = gaussian_filter(crop, s)
    dose = None
    if raw_intensity and aug.dose_e_per_A2 is not None:
        lo, hi = np.log(aug.dose_e_per_A2[0]), np.log(aug.dose_e_per_A2[1])
        dose = float(np.exp(rng.uniform(lo, hi)))
    params = Degradation(
        dose_e_per_A2=dose,
        gaussian_noise=rng.uniform(*aug.gaussian_noise),
        scanline_jitter_px=rng.uniform(*aug.scanline_jitter_px),
        contamination_blobs=1.0 if rng.random() < aug.contamination_probability else 0.0,
        contamination_radius_A=rng.uniform(2.0, 6.0),
        contamination_strength=rng.uniform(0.2, 0.8),
    )
    if not raw_intensity:
        crop = crop - crop.min() + 1e-3  # positive for the contamination model
    crop = degrade(crop, pixel_size_A, params, rng)
    x = (normalize_unit(crop) + 1) / 2  # [0, 1] for gamma
    x = np.clip(x, 0, 1) ** rng.uniform(*aug.gamma)
    x = (x - 0.5) * rng.uniform(*aug.contrast) + 0.5
    return np.clip(2 * x - 1, -1, 1).astype(np.float32)
