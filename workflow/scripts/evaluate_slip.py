"""Adapter: one slip study's models + its held-out generated test set -> JSON and figures."""

from pathlib import Path

import torch

from vdwstack.regress.stage import evaluate_slip
from vdwstack.core.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
out = Path(snakemake.output.json)
evaluate_slip(snakemake.params.models, snakemake.input.test, out.parent, name=out.stem, **snakemake.params.views)
