import pandas as pd
from snakemake.utils import validate

from vdwstack.config import check_config, regressor_settings, slip_studies

validate(config, schema="../schemas/config.schema.yaml")
check_config(config)

DATASETS = sorted(config["datasets"])
SLIP_STUDIES = slip_studies(config["regress"])


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
    study="|".join(SLIP_STUDIES),


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
    """Training-grid dataset -> model folder, one slip model per training grid of the study."""
    return {
        ds: f"results/models/slip/{ds}"
        for ds in SLIP_STUDIES[wildcards.study]["train_datasets"]
    }


def evaluate_slip_inputs(wildcards):
    study = SLIP_STUDIES[wildcards.study]
    return {
        "models": [
            f"results/models/slip/{ds}/model.safetensors"
            for ds in study["train_datasets"]
        ],
        "test": f"results/synthetic/{study['test_dataset']}.zarr",
    }


def train_settings(task):
    """Params function: the settings of the `task` model trained on {dataset}."""
    return lambda wildcards: regressor_settings(
        config["regress"], task, wildcards.dataset
    )


def get_final_output():
    return [
        *expand("results/simulations/{dataset}.zarr", dataset=DATASETS),
        "results/drit/metrics.json",
        *expand("results/evaluation/slip_{study}.json", study=SLIP_STUDIES),
        "results/evaluation/twist.json",
    ]
