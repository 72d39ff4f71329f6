"""Stage 6, infer: experimental images read by the trained regressors — whole-image estimate,
sliding-window maps, stacking domains and their boundaries, atomic models of the readings.

Names are imported on first use (:mod:`vdwstack.core.lazy`): the settings
(:mod:`vdwstack.infer.settings`) are read by the workflow's config and the CLI, which must not pay
for importing PyTorch."""

from vdwstack.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "InferenceSettings": "settings", "InferenceResult": "reading", "infer_image": "reading",
    "domain_boundaries": "domains", "segment_domains": "domains",
    "infer_to_files": "stage", "read_truth": "stage", "tasks_of": "stage",
})
