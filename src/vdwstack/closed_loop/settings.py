"""Settings of the closed-loop check (lengths in Å, angles in degrees): one owner, the dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClosedLoopSettings:
    """How the check is done (lengths in Å, angles in degrees).

    crop_A: side of the square crop compared with the simulation.
    work_pixel_size_A: images with finer pixels are resampled to this (never up-sampled).
    max_crop_px: upper bound on the crop side in pixels (keeps one evaluation at ~10–40 ms).
    refine: also optimise the reading itself (slip, or θ with the layers' relative translation).
    min_agreement: below this agreement (Pearson r) the reading is flagged.
    max_evaluations: simulations per Nelder–Mead optimisation.
    defocus_A: defocus values tried (abTEM sign: positive = underfocus).
    source_fwhm_range_A: bounds of the fitted source size (FWHM).
    denoise_A: σ of the Gaussian low-pass applied to both crop and simulation.
    background_A: σ of the smooth background removed from the crop.
    min_tolerance_A, min_tolerance_deg: floors of the tolerance on the refinement's change
        (the reading's own uncertainty is used when larger).
    max_domains: slip domains checked per image (largest first), besides the whole image.
    search_alternatives: when to search globally for a better-fitting reading: "flagged" (the
        reading's agreement is below min_agreement), "always" or "never".
    alternative_margin: the alternative is reported as fitting better (a warning) when its agreement
        exceeds the reading's (and the refined reading's) by more than this (Pearson r) and it lies
        farther from the reading than the tolerance.
    alternative_step_A: step of the slip grid over the symmetry-reduced slip cell (Å).
    alternative_step_deg: step of the twist scan over the material's range (degrees).
    """

    crop_A: float = 24.0
    work_pixel_size_A: float = 0.1
    max_crop_px: int = 256
    refine: bool = True
    min_agreement: float = 0.5
    max_evaluations: int = 80
    defocus_A: tuple[float, ...] = (15.0, 35.0, 55.0)
    source_fwhm_range_A: tuple[float, float] = (0.3, 1.6)
    denoise_A: float = 0.25
    background_A: float = 4.0
    min_tolerance_A: float = 0.1
    min_tolerance_deg: float = 0.5
    max_domains: int = 4
    search_alternatives: str = "flagged"
    alternative_margin: float = 0.05
    alternative_step_A: float = 0.3
    alternative_step_deg: float = 1.5

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> ClosedLoopSettings:
        m = dict(m or {})
        m.pop("enabled", None)  # a workflow switch, not a setting of the check
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"closed_loop: unknown setting(s) {sorted(unknown)}")
        for k in ("defocus_A", "source_fwhm_range_A"):
            if k in m:
                m[k] = tuple(float(v) for v in m[k])
        if isinstance(m.get("search_alternatives"), bool):  # YAML true/false
            m["search_alternatives"] = "always" if m["search_alternatives"] else "never"
        s = cls(**m)
        if s.search_alternatives not in ("flagged", "always", "never"):
            raise ValueError(f"closed_loop.search_alternatives must be 'flagged', 'always' or 'never', "
                             f"got {s.search_alternatives!r}")
        if not 0 <= s.alternative_margin <= 1:
            raise ValueError(f"closed_loop.alternative_margin must be in [0, 1], got {s.alternative_margin!r}")
        for name in ("crop_A", "work_pixel_size_A", "denoise_A", "background_A", "alternative_step_A",
                     "alternative_step_deg"):
            v = getattr(s, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"closed_loop.{name} must be > 0, got {v!r}")
        if s.max_crop_px < 32 or s.max_evaluations < 1 or s.max_domains < 0:
            raise ValueError("closed_loop: max_crop_px ≥ 32, max_evaluations ≥ 1, max_domains ≥ 0 required")
        lo, hi = s.source_fwhm_range_A
        if not 0 <= lo < hi or not s.defocus_A:
            raise ValueError("closed_loop: source_fwhm_range_A must be [min, max] with 0 ≤ min < max, "
                             "defocus_A a non-empty list")
        return s
