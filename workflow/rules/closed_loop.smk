rule closed_loop:
    input:
        unpack(closed_loop_inputs),
    output:
        reading="results/closed_loop/{image}/reading.json",
        figure=report(
            "results/closed_loop/{image}/comparison.png",
            caption="../report/closed_loop.rst",
            category="Closed-loop check",
            labels={"image": "{image}"},
        ),
    log:
        "results/logs/closed_loop/{image}.log",
    benchmark:
        "results/benchmarks/closed_loop/{image}.tsv"
    conda:
        "../../envs/simulation.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("closed_loop.py"),
        settings=closed_loop_settings,
        microscope=config.get("microscope", {}),
    script:
        "../scripts/closed_loop.py"
