"""Adapter: twist model + held-out generated test set -> MAE vs θ with the FFT baseline."""

from pathlib import Path

import torch

from vdwstack.regress.stage import evaluate_twist
from vdwstack.core.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
evaluate_twist(Path(snakemake.input.model).parent, snakemake.input.test, Path(snakemake.output.json).parent,
               **snakemake.params.views)
