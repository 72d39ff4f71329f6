rule train_slip:
    input:
        unpack(train_inputs("slip")),
    output:
        model="results/models/slip/{dataset}/model.safetensors",
        card="results/models/slip/{dataset}/card.json",
        losses="results/models/slip/{dataset}/losses.csv",
    log:
        "results/logs/train_slip/{dataset}.log",
    benchmark:
        "results/benchmarks/train_slip/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1 if config["regress"]["settings"].get("device", "auto") != "cpu" else 0,
        mem_mb=8000,
        runtime=240,
    params:
        code=code_version("train_regressor.py"),
        task="slip",
        settings=train_settings("slip"),
    script:
        "../scripts/train_regressor.py"


rule train_twist:
    input:
        train="results/synthetic/{dataset}.zarr",
    output:
        model="results/models/twist/{dataset}/model.safetensors",
        card="results/models/twist/{dataset}/card.json",
        losses="results/models/twist/{dataset}/losses.csv",
    log:
        "results/logs/train_twist/{dataset}.log",
    benchmark:
        "results/benchmarks/train_twist/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1 if config["regress"]["settings"].get("device", "auto") != "cpu" else 0,
        mem_mb=8000,
        runtime=240,
    params:
        code=code_version("train_regressor.py"),
        task="twist",
        settings=train_settings("twist"),
    script:
        "../scripts/train_regressor.py"


rule evaluate_slip:
    input:
        unpack(evaluate_slip_inputs),
    output:
        json="results/evaluation/slip_{study}.json",
        boxplot="results/evaluation/slip_{study}_boxplot.png",
        robustness="results/evaluation/slip_{study}_robustness.png",
    log:
        "results/logs/evaluate_slip/{study}.log",
    benchmark:
        "results/benchmarks/evaluate_slip/{study}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_version("evaluate_slip.py"),
        models=slip_model_dirs,
        views=evaluation_views(config),  # read as inference reads (infer.tta_mirror)
    script:
        "../scripts/evaluate_slip.py"


rule evaluate_twist:
    input:
        model=f"results/models/twist/{config['regress']['twist']['train_dataset']}/model.safetensors",
        test=f"results/synthetic/{config['regress']['twist']['test_dataset']}.zarr",
    output:
        json="results/evaluation/twist.json",
        mae="results/evaluation/twist_mae.png",
    log:
        "results/logs/evaluate_twist.log",
    benchmark:
        "results/benchmarks/evaluate_twist.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_version("evaluate_twist.py"),
        views=evaluation_views(config),
    script:
        "../scripts/evaluate_twist.py"
