"""Adapter: one dataset of the config -> stackings table (TSV)."""

from vdwstack.core.logs import log_to_file
from vdwstack.structures.stage import write_structures

log_to_file(snakemake.log[0])
write_structures(
    snakemake.wildcards.dataset,
    snakemake.params.spec,
    snakemake.params.seed,
    snakemake.params.microscope,
    snakemake.params.realism,
    snakemake.output.table,
)
