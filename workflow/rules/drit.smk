rule drit_train:
    input:
        unpack(drit_inputs),
    output:
        generator="results/drit/generator.safetensors",
        card="results/drit/card.json",
        metrics="results/drit/metrics.json",
        losses="results/drit/losses.csv",
        samples="results/drit/samples/final.png",
    log:
        "results/logs/drit_train.log",
    benchmark:
        "results/benchmarks/drit_train.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1 if config["drit"].get("device", "auto") != "cpu" else 0,
        mem_mb=8000,
        runtime=240,
    params:
        code=code_version("drit_train.py"),
        drit=drit_training_config,
        eval_images=config["drit"].get("eval_images", 12),
    script:
        "../scripts/drit_train.py"
