# vdwstack: interlayer slip and twist of van der Waals stacks from ADF-STEM images.
# The chain (docs/architecture.md): structures -> simulate -> drit_train -> synthesize -> regress -> infer -> closed_loop -> report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/pseudo_experimental.smk"
include: "workflow/rules/drit.smk"
include: "workflow/rules/synthesize.smk"
include: "workflow/rules/regress.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/closed_loop.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
