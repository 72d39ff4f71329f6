"""Training data for DRIT: crops of clean simulations (domain A) and of the few experimental
style references (domain B), at one working pixel size."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from vdwstack.core.images import normalize_unit, read_image
from vdwstack.core.resample import resample
from vdwstack.structures.pixel_size import PixelSize, read_calibrated_image

log = logging.getLogger(__name__)


@dataclass
class StyleReference:
    """One experimental image resampled to the working pixel size."""

    reference_id: str
    image: np.ndarray  # float32 [H, W], normalized to [−1, 1]
    pixel_size_A: float  # native pixel size (Å/px)
    pixel_size_source: str  # "sheet", "metadata" or "estimated" (vdwstack.structures.pixel_size)
    warnings: tuple[str, ...] = ()


def load_style_references(rows: Sequence[dict], material_fallback: str, working_pixel_size_A: float,
                          match_pixel_size: bool = True, known: Mapping[str, Mapping] | None = None
                          ) -> list[StyleReference]:
    """Read the style-reference sheet's images; resample each to the working pixel size (Å/px).

    The pixel size is resolved once (:func:`vdwstack.structures.pixel_size.resolve_pixel_size`:
    sheet > file > Bragg spots). `known` (reference id → {"pixel_size_A", "pixel_size_source"}, e.g.
    from the DRIT card) gives already-resolved values, which are used as they are. With
    ``match_pixel_size=False`` (ablation) images keep their pixels.
    """
    refs = []
    for row in rows:
        path = Path(row["path"])
        ref_id = str(row["reference_id"])
        material = row.get("material") or material_fallback
        sheet_p = str(row.get("pixel_size_A") or "").strip()
        if known is not None and ref_id in known:
            img, _ = read_image(path)
            px = PixelSize(float(known[ref_id]["pixel_size_A"]), str(known[ref_id]["pixel_size_source"]))
        else:
            img, px = read_calibrated_image(path, material, float(sheet_p) if sheet_p else None, "sheet")
        p = px.pixel_size_A
        if match_pixel_size:
            img = resample(img, p, working_pixel_size_A)
        refs.append(StyleReference(ref_id, normalize_unit(img), p, px.source, px.warnings))
        log.info("style reference %s: %s px at %.4f Å/px (%s)", ref_id, img.shape, p, px.source)
    if not refs:
        raise ValueError("the style-reference sheet lists no images: DRIT needs at least one")
    return refs


def crop_geometry(shape: tuple[int, int], size: int, n: int, rng: np.random.Generator, rotate: bool = False,
                  scale_jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random placements of `n` size×size crops in an image of `shape` (px): angle (rad), scale
    (1 ± scale_jitter), centre row and column (px), each [n]. The rotated, rescaled crop lies inside
    the image with 2 px to spare (no padding enters it); where it cannot, the crop is plain (angle 0,
    scale 1: never rescaled to fit)."""
    H, W = shape
    angle = rng.uniform(0, 2 * np.pi, n) if rotate else np.zeros(n)
    scale = rng.uniform(1 - scale_jitter, 1 + scale_jitter, n) if scale_jitter > 0 else np.ones(n)
    # Half-diagonal of the rotated, scaled crop must fit in the image.
    reach = size * scale * (np.abs(np.cos(angle)) + np.abs(np.sin(angle))) / 2 + 2
    too_big = 2 * reach > min(H, W)
    angle[too_big], scale[too_big] = 0.0, 1.0
    reach[too_big] = size / 2 + 2
    if np.any(2 * reach > min(H, W)):
        raise ValueError(f"image of {H}x{W} px is smaller than a {size} px crop")
    return angle, scale, rng.uniform(reach, H - reach), rng.uniform(reach, W - reach)


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, rotate: bool = False,
                scale_jitter: float = 0.0) -> np.ndarray:
    """A size×size crop, optionally rotated by a random angle and rescaled by 1 ± scale_jitter
    (bicubic, sampled inside the image so no padding enters the crop; see :func:`crop_geometry`)."""
    (angle,), (scale,), (cy,), (cx,) = crop_geometry(image.shape, size, 1, rng, rotate, scale_jitter)
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
