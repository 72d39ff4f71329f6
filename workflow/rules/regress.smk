rule synthesize:
    input:
        simulations="results/simulations/{dataset}.zarr",
        generator="results/drit/generator.safetensors",
        card="results/drit/card.json",
        sheet=config["style_references"],
    output:
        zarr=directory("results/synthetic/{dataset}.zarr"),
    log:
        "results/logs/synthesize/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1 if config["synthesize"].get("device", "auto") != "cpu" else 0,
        mem_mb=4000,
        runtime=60,
    params:
        settings=config["synthesize"],
        seed=config["seed"],
    script:
        "../scripts/synthesize.py"


rule train_regressor:
    input:
        train="results/synthetic/{dataset}.zarr",
    output:
        model="results/models/{task}/{dataset}/model.safetensors",
        card="results/models/{task}/{dataset}/card.json",
        losses="results/models/{task}/{dataset}/losses.csv",
    log:
        "results/logs/train_{task}/{dataset}.log",
    benchmark:
        "results/benchmarks/train_{task}/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1 if config["regress"]["settings"].get("device", "auto") != "cpu" else 0,
        mem_mb=8000,
        runtime=240,
    params:
        settings=config["regress"]["settings"],
    script:
        "../scripts/train_regressor.py"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        slip="results/evaluation/slip.json",
        slip_boxplot="results/evaluation/slip_boxplot.png",
        slip_robustness="results/evaluation/slip_robustness.png",
        twist="results/evaluation/twist.json",
        twist_mae="results/evaluation/twist_mae.png",
    log:
        "results/logs/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        slip_models=slip_model_dirs,
    script:
        "../scripts/evaluate.py"
