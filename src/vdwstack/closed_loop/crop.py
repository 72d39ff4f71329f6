"""The experimental crop compared with the simulation, resampled to the working pixel size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.core.resample import resample


@dataclass
class Crop:
    """A square crop of an image resampled to the working pixel size.

    raw: crop (float64, n×n) at `pixel_size_A`; x0_A, y0_A: its corner in the image frame (Å).
    """

    raw: np.ndarray
    pixel_size_A: float
    x0_A: float
    y0_A: float
    image_pixel_size_A: float

    @property
    def size_A(self) -> float:
        return self.raw.shape[0] * self.pixel_size_A


def extract_crop(image: np.ndarray, pixel_size_A: float, centre_A: tuple[float, float] | None,
                 settings: ClosedLoopSettings) -> Crop:
    """Square crop around centre_A = (x, y) in Å (None: the image centre), resampled (anti-aliased)
    to max(pixel_size_A, settings.work_pixel_size_A) and shifted inside the image when needed."""
    img = np.asarray(image, np.float64)
    H, W = img.shape
    p = float(pixel_size_A)
    pw = max(p, settings.work_pixel_size_A)
    n = int(min(settings.max_crop_px, np.floor(settings.crop_A / pw), np.floor((min(H, W) - 1) * p / pw)))
    if n < 32:
        raise ValueError(f"image of {W * p:.1f}×{H * p:.1f} Å is too small for a closed-loop crop (need ≥ "
                         f"{32 * pw:.1f} Å at {pw:g} Å/px)")
    step = pw / p  # input pixels per crop pixel
    span = (n - 1) * step
    cx, cy = ((W - 1) / 2, (H - 1) / 2) if centre_A is None else (centre_A[0] / p, centre_A[1] / p)
    c0 = float(np.clip(cx - span / 2, 0, W - 1 - span))
    r0 = float(np.clip(cy - span / 2, 0, H - 1 - span))
    # Resample (anti-aliased) only the region that is sampled, with a margin for the filter.
    pad = int(np.ceil(4 * step)) + 2
    rs, cs = max(int(r0) - pad, 0), max(int(c0) - pad, 0)
    region = img[rs:int(np.ceil(r0 + span)) + pad + 1, cs:int(np.ceil(c0 + span)) + pad + 1]
    raw = resample(region, p, pw, origin_px=(r0 - rs, c0 - cs), shape=(n, n), mode="nearest")
    return Crop(raw=raw, pixel_size_A=pw, x0_A=c0 * p, y0_A=r0 * p, image_pixel_size_A=p)
