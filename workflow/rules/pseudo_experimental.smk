rule pseudo_experimental:
    output:
        image="results/pseudo_experimental/{name}.tif",
    log:
        "results/logs/pseudo_experimental/{name}.log",
    conda:
        "../../envs/simulation.yaml"
    params:
        code=code_version("pseudo_experimental.py"),
        spec=pseudo_spec,
        seed=config["seed"],
    script:
        "../scripts/pseudo_experimental.py"
