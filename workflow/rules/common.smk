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
    task="slip|twist",


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


def slip_model_dirs(wildcards):
    """Training-grid label -> model folder, one slip model per training dataset."""
    return {
        ds: f"results/models/slip/{ds}"
        for ds in config["regress"]["slip"]["train_datasets"]
    }


def evaluate_inputs(wildcards):
    reg = config["regress"]
    return {
        "slip_models": [
            f"results/models/slip/{ds}/model.safetensors"
            for ds in reg["slip"]["train_datasets"]
        ],
        "slip_test": f"results/synthetic/{reg['slip']['test_dataset']}.zarr",
        "twist_model": f"results/models/twist/{reg['twist']['train_dataset']}/model.safetensors",
        "twist_test": f"results/synthetic/{reg['twist']['test_dataset']}.zarr",
    }


def get_final_output():
    return [
        *expand("results/simulations/{dataset}.zarr", dataset=DATASETS),
        "results/drit/metrics.json",
        "results/evaluation/slip.json",
        "results/evaluation/twist.json",
    ]
