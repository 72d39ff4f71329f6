"""Training data for DRIT: crops of clean simulations (domain A) and of the few experimental
style references (domain B), at one working pixel size."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates, zoom

from vdwstack.core.images import normalize_unit, read_image
from vdwstack.structures.pixel_size import estimate_pixel_size

log = logging.getLogger(__name__)


@dataclass
class StyleReference:
    """One experimental image resampled to the working pixel size."""

    reference_id: str
    image: np.ndarray  # float32 [H, W], normalized to [−1, 1]
    pixel_size_A: float  # native pixel size
    pixel_size_source: str  # "sheet", "file" or "estimated"


def load_style_references(rows: Sequence[dict], material_fallback: str, working_pixel_size_A: float,
                          match_pixel_size: bool = True) -> list[StyleReference]:
    """Read the style-reference sheet's images; resample each to the working pixel size.

    The pixel size comes from the sheet, else the file's metadata, else the image's own Bragg spots
    (recorded as "estimated"). With ``match_pixel_size=False`` (ablation) images keep their pixels.
    """
    refs = []
    for row in rows:
        path = Path(row["path"])
        img, file_p = read_image(path)
        sheet_p = str(row.get("pixel_size_A") or "").strip()
        if sheet_p:
            p, source = float(sheet_p), "sheet"
        elif file_p:
            p, source = file_p, "file"
        else:
            p, source = estimate_pixel_size(img, row.get("material") or material_fallback).pixel_size_A, "estimated"
            log.warning("%s: no pixel size given; estimated %.4f Å/px from its Bragg spots", path, p)
        if not p > 0:
            raise ValueError(f"{path}: pixel size must be > 0 Å, got {p}")
        if match_pixel_size:
            img = zoom(img, p / working_pixel_size_A, order=3)
        refs.append(StyleReference(str(row["reference_id"]), normalize_unit(img), p, source))
        log.info("style reference %s: %s px at %.4f Å/px (%s)", row["reference_id"], img.shape, p, source)
    if not refs:
        raise ValueError("the style-reference sheet lists no images: DRIT needs at least one")
    return refs


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, rotate: bool = False,
                scale_jitter: float = 0.0) -> np.ndarray:
    """A size×size crop, optionally rotated by a random angle and rescaled by 1 ± scale_jitter
    (bicubic, sampled inside the image so no padding enters the crop)."""
    H, W = image.shape
    angle = rng.uniform(0, 2 * np.pi) if rotate else 0.0
    scale = rng.uniform(1 - scale_jitter, 1 + scale_jitter) if scale_jitter > 0 else 1.0
    # Half-diagonal of the rotated, scaled crop must fit in the image.
    reach = size * scale * (abs(np.cos(angle)) + abs(np.sin(angle))) / 2 + 2
    if 2 * reach > min(H, W):  # too small to rotate: plain crop (never rescale to fit)
        angle, scale = 0.0, 1.0
        reach = size / 2 + 2
    if 2 * reach > min(H, W):
        raise ValueError(f"image of {H}x{W} px is smaller than a {size} px crop")
    cy = rng.uniform(reach, H - reach)
    cx = rng.uniform(reach, W - reach)
    if angle == 0.0 and scale == 1.0:
        r0, c0 = int(cy - size / 2), int(cx - size / 2)
        return image[r0:r0 + size, c0:c0 + size].copy()
    t = (np.arange(size) - (size - 1) / 2) * scale
    yy, xx = np.meshgrid(t, t, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    rows = cy + s * xx + c * yy
    cols = cx + c * xx - s * yy
    return map_coordinates(image, [rows, cols], order=3, mode="reflect").astype(np.float32)


class DomainSampler:
    """Batches of domain A (simulations) and domain B (style references) crops."""

    def __init__(self, sims: np.ndarray, refs: list[StyleReference], crop_px: int, augment_refs: bool = True,
                 rotate_sims: bool = True):
        if sims.ndim != 3 or len(sims) == 0:
            raise ValueError("need a non-empty [N, H, W] simulation array")
        if min(sims.shape[1:]) < crop_px:
            raise ValueError(f"simulated images ({sims.shape[1]}x{sims.shape[2]} px) are smaller than crop_px={crop_px}")
        self.sims = sims
        self.refs = refs
        self.crop_px = crop_px
        self.augment_refs = augment_refs
        self.rotate_sims = rotate_sims

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(A crops, B crops, indices of the simulations used), float32 [batch, 1, crop, crop]."""
        idx = rng.integers(len(self.sims), size=batch)
        a = []
        for i in idx:
            img = self.sims[i]
            crop = random_crop(img, self.crop_px, rng)
            if self.rotate_sims:  # 90° turns keep the pixel grid exact
                crop = np.rot90(crop, rng.integers(4)).copy()
            a.append(normalize_unit(crop))
        b = []
        for _ in range(batch):
            ref = self.refs[rng.integers(len(self.refs))]
            b.append(normalize_unit(random_crop(ref.image, self.crop_px, rng, rotate=self.augment_refs,
                                 scale_jitter=0.1 if self.augment_refs else 0.0)))
        return np.stack(a)[:, None], np.stack(b)[:, None], idx
