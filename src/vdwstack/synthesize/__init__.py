"""Stage 4, synthesize: every clean simulation translated by the trained DRIT into k experiment-like
images with the same labels."""

from vdwstack.synthesize.stage import SynthesizeSettings, synthesize_dataset

__all__ = ["SynthesizeSettings", "synthesize_dataset"]
