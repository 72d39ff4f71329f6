rule structures:
    output:
        table="results/structures/{dataset}.tsv",
    params:
        spec=dataset_spec,
        seed=config["seed"],
        microscope=config.get("microscope", {}),
        realism=config.get("realism", {}),
    log:
        "results/logs/structures/{dataset}.log",
    benchmark:
        "results/benchmarks/structures/{dataset}.tsv"
    conda:
        "../../envs/simulation.yaml"
    script:
        "../scripts/structures.py"
