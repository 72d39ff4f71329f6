"""Adapter: infer records + final readings + evaluation + benchmarks -> results/report/index.html."""

import json
from pathlib import Path

from vdwstack.core.logs import log_to_file
from vdwstack.report.stage import write_report

log_to_file(snakemake.log[0])
records = [json.loads(Path(p).read_text()) for p in snakemake.input.results]
maps = {r["image_id"]: m for r, m in zip(records, snakemake.input.maps)}
evaluation = {Path(p).stem: json.loads(Path(p).read_text()) for p in snakemake.input.evaluation}
captions = {
    "boxplot": "ΔD of each slip model on held-out generated images, per training-grid step.",
    "robustness": "Mean ΔD vs added noise, contamination and vacancy fraction.",
    "twist_mae": "Twist MAE vs θ: ResNet and the FFT-spot baseline on the same images.",
    "final": "DRIT: simulations (top) and their experiment-like translations.",
}
figures = [
    (p, next((c for k, c in captions.items() if k in Path(p).stem), Path(p).stem))
    for p in snakemake.input.figures
]
# Final readings (empty when closed_loop.enabled is false).
closed_loop = {}
for reading_json, png in zip(
    getattr(snakemake.input, "closed_loop", []),
    getattr(snakemake.input, "closed_loop_figures", []),
):
    closed_loop[Path(reading_json).parent.name] = (json.loads(Path(reading_json).read_text()), png)
write_report(
    records,
    maps,
    Path(snakemake.output.html).parent,
    figures,
    "results/benchmarks",
    evaluation,
    snakemake.input.losses,
    closed_loop,
)
