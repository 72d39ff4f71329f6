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
    # One core: only the FFTs are threaded and they are a small part of a render (2-core EPYC: ~90 %
    # load with 2 threads, and the same job time with 1), so two simulations run side by side.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        code=code_version("simulate.py"),
        simulation=config["simulation"],
    script:
        "../scripts/simulate.py"
