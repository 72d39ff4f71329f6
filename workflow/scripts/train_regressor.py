"""Adapter: synthesized dataset -> slip or twist ResNet regressor (safetensors + card)."""

from pathlib import Path

import torch

from vdwstack.core.logs import log_to_file
from vdwstack.regress.stage import train_from_dataset

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
train_from_dataset(
    snakemake.input.train,
    snakemake.params.settings,
    snakemake.params.task,
    Path(snakemake.output.card).parent,
    init_weights=snakemake.input.get("init"),
    cores=snakemake.threads,  # the other cores may run other jobs: no prefetch thread on them
)
