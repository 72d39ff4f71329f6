from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from vdwstack.config import (
    check_config,
    evaluation_views,
    init_dataset,
    regressor_settings,
    slip_studies,
    validate_config,
)
from vdwstack.core.errors import ConfigError
from vdwstack.core.sheets import read_sheet
from vdwstack.core.provenance import canonical_order, code_digest

try:
    # Every violation at once, each naming its key and what is allowed; then Snakemake's own
    # validation, which also fills in the schema's defaults.
    validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
    validate(config, schema="../schemas/config.schema.yaml")
    check_config(config)
except ConfigError as e:
    raise WorkflowError(str(e)) from None
# Key order is not content: params recorded from a reordered config.yaml stay the same.
_canonical = canonical_order(config)
config.clear()
config.update(_canonical)

DATASETS = sorted(config["datasets"])
SLIP_STUDIES = slip_studies(config["regress"])


def load_sheet(key, schema, id_column):
    """The sample sheet named by config[key], every row checked (vdwstack.core.sheets.read_sheet);
    a bad sheet stops the workflow before any job runs, naming the file, row and column.
    """
    schema = yaml.safe_load(
        (Path(workflow.basedir) / "workflow" / "schemas" / schema).read_text()
    )
    try:
        return read_sheet(config[key], schema, id_column)
    except (OSError, ValueError) as e:
        raise WorkflowError(f"config {key}: {e}") from None


images = load_sheet("images", "images.schema.yaml", "image_id")
style_references = load_sheet(
    "style_references", "style_references.schema.yaml", "reference_id"
)
IMAGES = images.set_index("image_id", drop=False)


wildcard_constraints:
    dataset="|".join(DATASETS),
    image="|".join(IMAGES.index) or "NO_IMAGES",
    study="|".join(SLIP_STUDIES),


def code_version(script):
    """Digest of a rule's script and the vdwstack modules it imports (a `code` param): the rule
    reruns when that code changes meaning, not when a file is merely touched."""
    return code_digest(Path(workflow.basedir) / "workflow" / "scripts" / script)


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


def train_inputs(task):
    """Input function: the training data of the `task` model on {dataset}, and the model whose
    backbone starts it when its slip study has ``init_from``."""

    def inputs(wildcards):
        out = {"train": f"results/synthetic/{wildcards.dataset}.zarr"}
        src = (
            init_dataset(config["regress"], wildcards.dataset)
            if task == "slip"
            else None
        )
        if src is not None:
            out["init"] = f"results/models/slip/{src}/model.safetensors"
        return out

    return inputs


def _dataset_finest_first(names):
    return sorted(names, key=lambda d: config["datasets"][d].get("slip_step_A", 0.0))


def model_for(task, material, layers):
    """Model folder of the task for this material (finest slip grid), or None when none is trained."""
    reg, ds = config["regress"], config["datasets"]
    if task == "twist":
        d = reg["twist"]["train_dataset"]
        return f"results/models/twist/{d}" if ds[d]["material"] == material else None
    for study in SLIP_STUDIES.values():
        for d in _dataset_finest_first(study["train_datasets"]):
            if ds[d]["material"] == material and int(ds[d].get("layers", 2)) == layers:
                return f"results/models/slip/{d}"
    return None


def image_models(wildcards):
    """Task -> model folder for one image of the sheet (None: no model for its material)."""
    row = IMAGES.loc[wildcards.image]
    tasks = ["slip", "twist"] if row["task"] == "both" else [row["task"]]
    return {t: model_for(t, row["material"], int(row["layers"])) for t in tasks}


def infer_inputs(wildcards):
    row = IMAGES.loc[wildcards.image]
    models = [f"{m}/model.safetensors" for m in image_models(wildcards).values() if m]
    return {"image": row["path"], "models": models}


def report_inputs(wildcards):
    return {
        "results": expand("results/infer/{image}/result.json", image=IMAGES.index),
        "maps": expand("results/infer/{image}/maps.npz", image=IMAGES.index),
        "closed_loop": closed_loop_outputs("reading.json"),
        "closed_loop_figures": closed_loop_outputs("comparison.png"),
        "evaluation": [
            *expand("results/evaluation/slip_{study}.json", study=SLIP_STUDIES),
            "results/evaluation/twist.json",
        ],
        "figures": [
            *expand("results/evaluation/slip_{study}_boxplot.png", study=SLIP_STUDIES),
            *expand(
                "results/evaluation/slip_{study}_robustness.png", study=SLIP_STUDIES
            ),
            "results/evaluation/twist_mae.png",
            "results/drit/samples/final.png",
        ],
        "losses": [
            "results/drit/losses.csv",
            *expand(
                "results/models/slip/{dataset}/losses.csv",
                dataset=[d for s in SLIP_STUDIES.values() for d in s["train_datasets"]],
            ),
            f"results/models/twist/{config['regress']['twist']['train_dataset']}/losses.csv",
        ],
    }


def get_final_output():
    return [
        *expand("results/simulations/{dataset}.zarr", dataset=DATASETS),
        "results/drit/metrics.json",
        *expand("results/evaluation/slip_{study}.json", study=SLIP_STUDIES),
        "results/evaluation/twist.json",
        "results/report/index.html",
    ]


def closed_loop_enabled():
    """closed_loop.enabled; a config without the block gets the schema's default (on)."""
    return bool(config.get("closed_loop", {}).get("enabled", True))


def closed_loop_settings(wildcards):
    """The closed_loop block without the workflow switch (a params function)."""
    return {k: v for k, v in config.get("closed_loop", {}).items() if k != "enabled"}


def closed_loop_inputs(wildcards):
    return {
        "image": IMAGES.loc[wildcards.image, "path"],
        "result": f"results/infer/{wildcards.image}/result.json",
        "maps": f"results/infer/{wildcards.image}/maps.npz",
    }


def closed_loop_outputs(name):
    """Per-image closed-loop outputs for the report ([] when the check is switched off)."""
    if not closed_loop_enabled():
        return []
    return expand(f"results/closed_loop/{{image}}/{name}", image=IMAGES.index)
