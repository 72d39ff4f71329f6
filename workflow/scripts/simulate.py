"""Adapter: stackings table -> clean simulated images (Zarr)."""

from vdwstack.core.logs import log_to_file
from vdwstack.simulate.stage import simulate_table_to_zarr

log_to_file(snakemake.log[0])
simulate_table_to_zarr(
    snakemake.input.table,
    snakemake.output.zarr,
    snakemake.params.simulation,
    workers=snakemake.threads,
)
