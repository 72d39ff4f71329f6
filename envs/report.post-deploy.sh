#!/usr/bin/env bash
# Snakemake runs this inside the freshly created env (with --use-conda), from the workflow root:
# install the vdwstack package itself; its dependencies come from the env file.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
