"""Stage 6, infer: experimental images read by the trained regressors — whole-image estimate,
sliding-window maps, stacking domains and their boundaries, atomic models of the readings."""

from vdwstack.infer.domains import domain_boundaries, segment_domains
from vdwstack.infer.reading import InferenceResult, InferenceSettings, infer_image
from vdwstack.infer.stage import atomic_model, infer_to_files, read_truth, tasks_of

__all__ = ["InferenceResult", "InferenceSettings", "atomic_model", "domain_boundaries", "infer_image",
           "infer_to_files", "read_truth", "segment_domains", "tasks_of"]
