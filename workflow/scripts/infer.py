"""Adapter: one row of the image sheet + trained models -> results/infer/<image>/ (result.json,
maps.npz, maps/ calibrated TIFFs, maps.zarr). The row's optional `signal` names the signal of a
multi-signal file to read (empty: the HAADF/ADF image)."""

from pathlib import Path

import torch

from vdwstack.infer.stage import infer_to_files
from vdwstack.core.logs import log_to_file

log_to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
row = snakemake.params.row
infer_to_files(
    snakemake.input.image,
    row["image_id"],
    row["material"],
    int(row["layers"]),
    row["task"],
    float(row["pixel_size_A"]) if row.get("pixel_size_A") else None,
    snakemake.params.models,
    snakemake.params.settings,
    Path(snakemake.output.result).parent,
    on_error="raise" if snakemake.params.on_error == "fail" else "record",
    signal=row.get("signal") or None,
)
