import pandas as pd
from snakemake.utils import validate

from vdwstack.config import check_config

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

DATASETS = sorted(config["datasets"])


def read_sheet(path, schema):
    """A sample sheet (TSV, one row per image), validated; empty when the file has no rows."""
    sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    validate(sheet, schema=schema)
    return sheet


images = read_sheet(config["images"], "../schemas/images.schema.yaml")
style_references = read_sheet(
    config["style_references"], "../schemas/style_references.schema.yaml"
)


wildcard_constraints:
    dataset="|".join(DATASETS),


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def pseudo_spec(wildcards):
    return config["pseudo_experimental"][wildcards.name]


def drit_inputs(wildcards):
    """Simulations of the configured dataset, the style sheet and every image it lists."""
    return {
        "simulations": f"results/simulations/{config['drit']['dataset']}.zarr",
        "sheet": config["style_references"],
        "references": list(style_references["path"]),
    }


def drit_training_config(wildcards):
    """The drit block without the keys that only route files (they are inputs already)."""
    return {
        k: v for k, v in config["drit"].items() if k not in ("dataset", "eval_images")
    }


def get_final_output():
    return [
        *expand("results/simulations/{dataset}.zarr", dataset=DATASETS),
        "results/drit/metrics.json",
    ]
