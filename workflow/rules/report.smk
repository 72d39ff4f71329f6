rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        summary=report(
            "results/report/summary.tsv",
            caption="../report/summary.rst",
            category="Report",
        ),
        slip_cell=report(
            "results/report/slip_cell_histogram.png",
            caption="../report/slip_cell.rst",
            category="Run-wide statistics",
        ),
        twist_hist=report(
            "results/report/twist_histogram.png",
            caption="../report/twist_hist.rst",
            category="Run-wide statistics",
        ),
    log:
        "results/logs/report.log",
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_version("report.py"),
    script:
        "../scripts/report.py"
