rule pseudo_experimental:
    output:
        image="results/pseudo_experimental/{name}.tif",
    params:
        spec=pseudo_spec,
        seed=config["seed"],
    log:
        "results/logs/pseudo_experimental/{name}.log",
    conda:
        "../../envs/simulation.yaml"
    script:
        "../scripts/pseudo_experimental.py"
