"""Training-time augmentation of labelled images for the regressors.

Labels live in the lattice frame, so in-plane rotations keep them; scale jitter is bounded so that
the model's pixel size stays meaningful; everything else (contrast, blur, noise, scan distortions,
contamination) imitates the microscope. No mirror flips: a mirrored ReS2 image is another lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from vdwstack.core.images import normalize_unit
from vdwstack.drit.data import random_crop
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

    @classmethod
    def off(cls) -> Augmentation:
        return cls(rotate=False, scale_jitter=0.0, contrast=(1, 1), gamma=(1, 1), blur_A=(0, 0),
                   dose_e_per_A2=None, gaussian_noise=(0, 0), scanline_jitter_px=(0, 0), contamination_probability=0)


def augment(image: np.ndarray, pixel_size_A: float, crop_px: int, aug: Augmentation,
            rng: np.random.Generator, raw_intensity: bool = True) -> np.ndarray:
    """One augmented, normalized ([−1, 1]) crop of `image`.

    ``raw_intensity``: the image is a clean simulation in beam fractions (shot noise applies);
    translated (experiment-like) images already carry noise, so only mild noise is added.
    """
    crop = random_crop(image, crop_px, rng, rotate=aug.rotate, scale_jitter=aug.scale_jitter)
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
