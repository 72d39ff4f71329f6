"""Adapter: simulations + style-reference sheet -> trained DRIT translator and its metrics."""

from pathlib import Path

import torch

from vdwstack.drit.stage import train_drit
from vdwstack.core.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
train_drit(
    snakemake.input.simulations,
    snakemake.input.sheet,
    snakemake.params.drit,
    Path(snakemake.output.card).parent,  # checkpoints and samples live beside the outputs
    eval_images=snakemake.params.eval_images,
)
