"""Adapter: trained regressors + held-out generated test sets -> evaluation JSON and figures."""

from pathlib import Path

import torch

from vdwstack.evaluate import evaluate_slip, evaluate_twist
from vdwstack.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
out = Path(snakemake.output.slip).parent
evaluate_slip(snakemake.params.slip_models, snakemake.input.slip_test, out)
evaluate_twist(Path(snakemake.input.twist_model).parent, snakemake.input.twist_test, out)
