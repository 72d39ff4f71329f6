"""Stage 6, infer: experimental images read by the trained regressors — whole-image estimate,
sliding-window maps, stacking domains and their boundaries, atomic models of the readings.

Names are imported on first use: the settings (:mod:`vdwstack.infer.settings`) are read by the
workflow's config and the CLI, which must not pay for importing PyTorch."""

import importlib

_EXPORTS = {
    "InferenceSettings": "settings", "InferenceResult": "reading", "infer_image": "reading",
    "domain_boundaries": "domains", "segment_domains": "domains",
    "atomic_model": "stage", "infer_to_files": "stage", "read_truth": "stage", "tasks_of": "stage",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vdwstack.infer.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vdwstack.infer' has no attribute {name!r}")
