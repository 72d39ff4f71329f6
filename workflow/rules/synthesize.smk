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
        code=code_version("synthesize.py"),
        settings=config["synthesize"],
        seed=config["seed"],
    script:
        "../scripts/synthesize.py"
