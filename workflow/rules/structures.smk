rule structures:
    output:
        table="results/structures/{dataset}.tsv",
    log:
        "results/logs/structures/{dataset}.log",
    benchmark:
        "results/benchmarks/structures/{dataset}.tsv"
    conda:
        "../../envs/simulation.yaml"
    params:
        code=code_version("structures.py"),
        spec=dataset_spec,
        seed=config["seed"],
        microscope=config.get("microscope", {}),
        realism=config.get("realism", {}),
    script:
        "../scripts/structures.py"
