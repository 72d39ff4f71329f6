"""Adapter: simulations + style-reference sheet -> trained DRIT translator and its metrics."""

import torch

from vdwstack.drit_pipeline import train_drit
from vdwstack.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
train_drit(
    snakemake.input.simulations,
    snakemake.input.sheet,
    snakemake.params.drit,
    snakemake.params.out_dir,
    eval_images=snakemake.params.eval_images,
)
