"""Adapter: config block -> pseudo-experimental TIFF (known truth) for demos."""

from vdwstack.core.logs import log_to_file
from vdwstack.simulate.stage import make_pseudo_experimental

log_to_file(snakemake.log[0])
make_pseudo_experimental(
    snakemake.wildcards.name,
    snakemake.params.spec,
    snakemake.params.seed,
    snakemake.output.image,
)
