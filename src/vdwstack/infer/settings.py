"""Settings of the infer stage (no PyTorch here: the workflow's config and the CLI read them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vdwstack.core.settings import setting, settings_from_mapping


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window maps, test-time augmentation and domain segmentation (config block ``infer``)."""

    window_A: float = setting(20.0, "map window (Å); at least the model's field of view", exclusiveMinimum=0)
    stride_A: float = setting(4.0, "step between map windows (Å)", exclusiveMinimum=0)
    whole_image_crops: int = setting(16, "crops averaged for the whole-image reading", minimum=1)
    tta_rotations: int = setting(4, "quarter turns averaged (labels do not change under rotation)", enum=[1, 2, 4])
    tta_fields: int = setting(4, "fields of view averaged per crop by a model trained on variable fields (the "
                                 "twist model), in images that hold its full field: that field down to ⅔ of it "
                                 "(1: the full field only)", minimum=1)
    tta_mirror: bool = setting(False, "lattices with a mirror line (2H MX2): each crop is also read mirrored, its "
                                      "features mapped back to the image's own stacking (ReX2: no effect)")
    decide_hand: bool = setting(True, "chiral lattices (ReX2): read the image and its mirror image and keep the "
                                      "hand whose features the network recognises (false: as imaged only)")
    batch_size: int = setting(32, "crops per network call", minimum=1)
    domain_tol_A: float = setting(0.35, "windows within this ΔD (Å) form one stacking domain", exclusiveMinimum=0)
    domain_tol_deg: float = setting(2.0, "windows within this Δθ (°) form one twist domain", exclusiveMinimum=0)
    domain_smoothing_A: float = setting(4.0, "σ of the Gaussian that smooths the window features before "
                                              "segmentation (Å; 0: none)", minimum=0)
    domain_coupling: float = setting(1.0, "Potts cost of a window edge between two domains, in units of "
                                          "(ΔD / domain_tol)² (larger: fewer, smoother domains)", minimum=0)
    min_domain_area_nm2: float = setting(2.0, "smaller pieces join their neighbouring domain (nm²)", minimum=0)

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> InferenceSettings:
        """From the config block (``on_error``, a workflow switch, is not a setting of the reading)."""
        return settings_from_mapping(cls, m, "infer", ignore=("on_error",))
