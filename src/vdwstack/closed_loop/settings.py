"""Settings of the closed-loop check (lengths in Å, angles in degrees): one owner, the dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vdwstack.core.settings import setting, settings_from_mapping


@dataclass(frozen=True)
class ClosedLoopSettings:
    """How every reading is re-simulated and fitted to its image (config block ``closed_loop``).

    The reading's own uncertainty replaces min_tolerance_A/deg when larger. An alternative from the
    global search is reported as fitting better (a warning) when its agreement exceeds the
    reading's (and the refined reading's) by more than alternative_margin and it lies farther from
    the reading than the tolerance.
    """

    crop_A: float = setting(24.0, "side of the compared crop (Å)", exclusiveMinimum=0)
    work_pixel_size_A: float = setting(0.1, "finer images are resampled to this (Å/px; never up-sampled)",
                                       exclusiveMinimum=0, maximum=0.3)
    max_crop_px: int = setting(256, "largest crop side (px; keeps one evaluation at ~10–40 ms)",
                               minimum=32, maximum=1024)
    refine: bool = setting(True, "also optimise the reading to maximise the agreement")
    min_agreement: float = setting(0.6, "below this agreement (Pearson r) the reading is flagged",
                                   minimum=-1, maximum=1)
    max_evaluations: int = setting(80, "simulations per Nelder–Mead optimisation", minimum=1, maximum=2000)
    defocus_A: tuple[float, ...] = setting(factory=lambda: (15.0, 35.0, 55.0),
                                           doc="defocus values tried (Å; positive = underfocus)", minItems=1)
    source_fwhm_range_A: tuple[float, float] = setting((0.3, 1.6), "bounds of the fitted source size, FWHM (Å)",
                                                       items={"type": "number", "minimum": 0})
    denoise_A: float = setting(0.25, "σ of the Gaussian low-pass on crop and simulation (Å; shot noise)",
                               exclusiveMinimum=0)
    background_A: float = setting(4.0, "σ of the smooth background removed from the crop (Å; contamination)",
                                  exclusiveMinimum=0)
    min_tolerance_A: float = setting(0.1, "floor of the slip change that is flagged (Å)", minimum=0)
    min_tolerance_deg: float = setting(0.5, "floor of the twist change that is flagged (°)", minimum=0)
    max_domains: int = setting(3, "slip domains checked besides the whole image (largest first)", minimum=0)
    search_alternatives: str = setting(
        "flagged", "global search for a better-fitting reading: flagged (agreement < min_agreement), always "
        "(or true), never (or false)",
        enum=["flagged", "always", "never", True, False])
    alternative_margin: float = setting(0.05, "an alternative beating the reading's agreement by more is a "
                                              "warning (Pearson r)", minimum=0, maximum=1)
    alternative_step_A: float = setting(0.3, "step of the slip grid over the slip cell (Å)",
                                        exclusiveMinimum=0, maximum=2)
    alternative_step_deg: float = setting(1.5, "step of the twist scan over the material's range (°)",
                                          exclusiveMinimum=0, maximum=10)

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> ClosedLoopSettings:
        """From the config block (``enabled``, a workflow switch, is not a setting of the check)."""
        m = dict(m or {})
        if isinstance(m.get("search_alternatives"), bool):  # YAML true/false
            m["search_alternatives"] = "always" if m["search_alternatives"] else "never"
        s = settings_from_mapping(cls, m, "closed_loop", ignore=("enabled",))
        lo, hi = s.source_fwhm_range_A
        if not lo < hi:
            raise ValueError(f"closed_loop.source_fwhm_range_A must be [min, max] with min < max, got {[lo, hi]}")
        return s
