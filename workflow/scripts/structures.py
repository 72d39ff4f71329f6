"""Adapter: one dataset of the config -> stackings table (TSV)."""

from vdwstack.core.logs import log_to_file
from vdwstack.structures.enumeration import enumerate_dataset, write_table

log_to_file(snakemake.log[0])
table = enumerate_dataset(
    snakemake.wildcards.dataset,
    snakemake.params.spec,
    snakemake.params.seed,
    snakemake.params.microscope,
    snakemake.params.realism,
)
write_table(table, snakemake.output.table)
