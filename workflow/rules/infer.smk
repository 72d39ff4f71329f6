rule infer:
    input:
        unpack(infer_inputs),
    output:
        result="results/infer/{image}/result.json",
        maps="results/infer/{image}/maps.npz",
        map_tiffs=directory("results/infer/{image}/maps"),
        map_store=directory("results/infer/{image}/maps.zarr"),
    log:
        "results/logs/infer/{image}.log",
    benchmark:
        "results/benchmarks/infer/{image}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        code=code_version("infer.py"),
        row=lambda wildcards: IMAGES.loc[wildcards.image].to_dict(),
        models=image_models,
        settings={k: v for k, v in config.get("infer", {}).items() if k != "on_error"},
        on_error=config.get("infer", {}).get("on_error", "record"),
    script:
        "../scripts/infer.py"
