rule simulate:
    input:
        table="results/structures/{dataset}.tsv",
    output:
        zarr=directory("results/simulations/{dataset}.zarr"),
    log:
        "results/logs/simulate/{dataset}.log",
    benchmark:
        "results/benchmarks/simulate/{dataset}.tsv"
    conda:
        "../../envs/simulation.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        code=code_version("simulate.py"),
        simulation=config["simulation"],
    script:
        "../scripts/simulate.py"
