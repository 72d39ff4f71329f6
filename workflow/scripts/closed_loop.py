"""Adapter: image + results/infer/<image>/ -> results/closed_loop/<image>/ (reading.json, comparison.png, models)."""

from pathlib import Path

from vdwstack.closed_loop.stage import closed_loop_to_files
from vdwstack.core.logs import log_to_file

log_to_file(snakemake.log[0])
closed_loop_to_files(
    snakemake.input.image,
    snakemake.input.result,
    snakemake.input.maps,
    snakemake.params.settings,
    Path(snakemake.output.reading).parent,
    microscope=snakemake.params.microscope,
)
