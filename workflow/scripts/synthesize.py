"""Adapter: clean simulations + trained DRIT -> experiment-like labelled dataset (Zarr)."""

from pathlib import Path

import torch

from vdwstack.core.logs import log_to_file
from vdwstack.synthesize.stage import synthesize_dataset

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
synthesize_dataset(
    snakemake.input.simulations,
    Path(snakemake.input.card).parent,
    snakemake.input.sheet,
    snakemake.output.zarr,
    **snakemake.params.settings,  # missing keys: SynthesizeSettings' defaults
    seed=snakemake.params.seed,
)
