rule simulate:
    input:
        table="results/structures/{dataset}.tsv",
    output:
        zarr=directory("results/simulations/{dataset}.zarr"),
    params:
        simulation=config["simulation"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        "results/logs/simulate/{dataset}.log",
    benchmark:
        "results/benchmarks/simulate/{dataset}.tsv"
    conda:
        "../../envs/simulation.yaml"
    script:
        "../scripts/simulate.py"
