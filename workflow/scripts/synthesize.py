"""Adapter: clean simulations + trained DRIT -> experiment-like labelled dataset (Zarr)."""

from pathlib import Path

import torch

from vdwstack.core.logs import log_to_file
from vdwstack.synthesize.stage import synthesize_dataset

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = snakemake.params.settings
synthesize_dataset(
    snakemake.input.simulations,
    Path(snakemake.input.card).parent,
    snakemake.input.sheet,
    snakemake.output.zarr,
    style_draws=settings.get("style_draws", 2),
    style_source=settings.get("style_source", "references"),
    batch_size=settings.get("batch_size", 16),
    seed=snakemake.params.seed,
    device=settings.get("device", "auto"),
)
