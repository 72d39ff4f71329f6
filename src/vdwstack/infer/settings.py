"""Settings of the infer stage (no PyTorch here: the workflow's config and the CLI read them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vdwstack.core.settings import setting, settings_from_mapping


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window maps, test-time augmentation and domain segmentation (config block ``infer``)."""

    window_A: float = setting(12.0, "map window (Å); at least the model's field of view", exclusiveMinimum=0)
    stride_A: float = setting(4.0, "step between map windows (Å)", exclusiveMinimum=0)
    whole_image_crops: int = setting(16, "crops averaged for the whole-image reading", minimum=1)
    tta_rotations: int = setting(4, "quarter turns averaged (labels do not change under rotation)", enum=[1, 2, 4])
    batch_size: int = setting(32, "crops per network call", minimum=1)
    domain_tol_A: float = setting(0.35, "windows within this ΔD (Å) form one stacking domain", exclusiveMinimum=0)
    domain_tol_deg: float = setting(2.0, "windows within this Δθ (°) form one twist domain", exclusiveMinimum=0)
    min_domain_windows: int = setting(2, "smaller domains stay unassigned (windows)", minimum=1)

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> InferenceSettings:
        """From the config block (``on_error``, a workflow switch, is not a setting of the reading)."""
        return settings_from_mapping(cls, m, "infer", ignore=("on_error",))
