"""The report stage: per-image figures, run-wide statistics and a standalone HTML page.

Inputs are the infer records (result.json + maps.npz per image), the evaluation JSON/PNG files
and the benchmark tables of earlier stages. Everything the page shows is embedded (base64 PNG),
so `results/report/index.html` opens from anywhere. The figures are drawn in
`vdwstack.report.figures`, the tables built in `vdwstack.report.tables` and the HTML fragments
in `vdwstack.report.page`; this module puts the sections together in order.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from vdwstack.report.figures import (
    image_figure,
    slip_cell_histogram,
    training_curves,
    twist_histogram,
)
from vdwstack.report.page import error_paragraph, img_tag, page
from vdwstack.report.tables import (
    benchmark_table,
    details_table,
    final_table,
    reading_text,
    slip_evaluation_table,
    stacking_counts,
)

log = logging.getLogger(__name__)

# image_id → (reading.json record, comparison.png): the final readings of the closed loop
ClosedLoop = Mapping[str, tuple[Mapping, str | Path]]


def _summary_section(records: Sequence[Mapping], closed_loop: ClosedLoop, out: Path) -> list[str]:
    """The answer table (final reading ± 95 % interval, agreement, hand, source, verdict first);
    also written to out/summary.tsv."""
    table = final_table(records, closed_loop)
    table.to_csv(out / "summary.tsv", sep="\t", index=False)
    return ["<h2>Readings</h2>",
            "<p>Final reading = the stacking whose simulation reproduces the image best (network proposal, "
            "its refinement and a global search, both hands for chiral lattices), with its calibrated 95 % "
            "interval; agreement = Pearson r of the band-passed image and simulation.</p>",
            table.to_html(index=False, na_rep="", classes="tbl", escape=True)]


def _statistics_section(records: Sequence[Mapping], maps: Mapping[str, str | Path], out: Path,
                        counts: Mapping[str, int]) -> list[str]:
    """Run-wide slip and twist histograms (drawn into out/) and the stacking-domain counts."""
    slip_png, twist_png = out / "slip_cell_histogram.png", out / "twist_histogram.png"
    slip_cell_histogram(records, maps, slip_png)
    twist_histogram(records, maps, twist_png)
    return ["<h2>Run-wide statistics</h2>",
            img_tag(slip_png, "Slips of all sliding-window predictions in the slip cell (Cartesian Å); "
                              "triangles: high-symmetry stackings; white: one unit cell."),
            img_tag(twist_png, "Twist angles of all sliding-window predictions."),
            "<h3>Stacking domains</h3>",
            pd.DataFrame([counts]).T.rename(columns={0: "count"}).to_html(classes="tbl")]


def _closed_loop_image_parts(image_id: str, reading: Mapping, comparison_png: str | Path) -> list[str]:
    """One image's final readings (one line each), their comparison figure, warnings or error."""
    parts = []
    for task, rec in (reading.get("results") or {}).items():
        parts.append(f"<p><b>{html.escape(task)}: {html.escape(reading_text(rec, task) or rec['status'])}</b> — "
                     f"{html.escape(rec['verdict'])} (source: {html.escape(rec['source'])}"
                     f"{', mirror lattice' if rec.get('mirrored') else ''})</p>")
    if reading.get("status") == "ok":
        parts.append(img_tag(comparison_png, f"{image_id}: experimental crop, the simulation of the final "
                                             "reading, difference; r = agreement."))
    for w in reading.get("warnings", []) or [reading.get("message") or reading.get("error")]:
        if w:
            parts.append(error_paragraph(w))
    return parts


def _image_section(record: Mapping, maps: Mapping[str, str | Path], out: Path, closed_loop: ClosedLoop) -> list[str]:
    """One image: its figure (drawn into out/images/), or its error; then its closed-loop check."""
    image_id = record["image_id"]
    if record.get("status") != "ok":
        return [f"<h3>{html.escape(image_id)}</h3>" + error_paragraph(f"error: {record.get('error')}")]
    parts = [f"<h3>{html.escape(image_id)}</h3>"]
    if record["results"]:  # the network's maps (none when no model exists for the material)
        png = out / "images" / f"{image_id}.png"
        image_figure(record, maps[image_id], png)
        cap = f"{image_id} ({record['material']}): image, network map overlay with domain boundaries, histogram."
        truth = record.get("errors_vs_truth")
        if truth:
            cap += " Network's error against the known truth: " + ", ".join(f"{k} = {v:.3f}" for k, v in truth.items())
        parts.append(img_tag(png, cap))
    if image_id in closed_loop:  # the answer first, the network's maps after it
        parts[1:1] = _closed_loop_image_parts(image_id, *closed_loop[image_id])
    return parts


def _closed_loop_section(closed_loop: ClosedLoop) -> list[str]:
    """How the final readings were reached: every reading's candidates, runner-up and fitted optics."""
    return ["<details><summary><b>How each reading was reached</b> (candidates, runner-up, fitted optics)"
            "</summary>",
            "<p>Every candidate — the network's proposal, its refinement, the global search's best stackings "
            "(slip grid, both slips of a trilayer, or a θ scan), in the image and its mirror for chiral "
            "lattices — is simulated and fitted to its image (rotation, scale, translation, defocus, source "
            "size); the final reading is the one that agrees best.</p>",
            details_table([c for c, _ in closed_loop.values()]).to_html(
                index=False, na_rep="", classes="tbl", float_format="%.3f", escape=True), "</details>"]


def _twist_evaluation_text(ev: Mapping) -> str:
    """The twist MAE (°) of the model and of the FFT baseline, overall and below 3°."""
    b3 = ev["below_3deg"]
    small = (f"below 3°: model {b3['model_mae_deg']:.2f}°, FFT {b3['fft_mae_deg']:.2f}°"
             if b3.get("model_mae_deg") is not None else "no test images below 3°")
    return (f"<p>twist MAE {ev['model_mae_deg']:.2f}° (FFT baseline {ev['fft_mae_deg']:.2f}°, "
            f"{ev['fft_mae_mod_ambiguity_deg']:.2f}° modulo θ↔60°−θ; {small})</p>")


def _evaluation_section(evaluation: Mapping[str, Mapping]) -> list[str]:
    """One heading per evaluation: a ΔD table for slip models, the MAE line for twist models."""
    parts = ["<h2>Evaluation on held-out generated images</h2>"]
    for name, ev in evaluation.items():
        # an evaluation of neither kind gets no heading (nothing to show)
        if "models" in ev:
            parts += [f"<h3>{html.escape(name)} ({ev['material']}, {ev['n_test']} images)</h3>",
                      slip_evaluation_table(ev).to_html(index=False, float_format="%.3f", classes="tbl")]
        elif "model_mae_deg" in ev:
            parts += [f"<h3>{html.escape(name)} ({ev['material']}, {ev['n_test']} images)</h3>"
                      + _twist_evaluation_text(ev)]
    return parts


def _figures_section(out: Path, extra_figures: Sequence[tuple[str | Path, str]],
                     loss_csvs: Sequence[str | Path]) -> list[str]:
    """Training curves (drawn into out/) and the earlier stages' figures that exist."""
    parts = []
    if extra_figures or loss_csvs:
        parts.append("<h2>Training and evaluation figures</h2>")
    if loss_csvs:
        training_curves(loss_csvs, out / "training_curves.png")
        parts.append(img_tag(out / "training_curves.png", "Training losses of DRIT and of the slip and twist regressors."))
    if extra_figures:
        parts += [img_tag(p, c) for p, c in extra_figures if Path(p).exists()]
    return parts


def write_report(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_dir: str | Path,
                 extra_figures: Sequence[tuple[str | Path, str]] = (), bench_root: str | Path | None = None,
                 evaluation: Mapping[str, Mapping] | None = None, loss_csvs: Sequence[str | Path] = (),
                 closed_loop: Mapping[str, tuple[Mapping, str | Path]] | None = None) -> Path:
    """Write figures and `index.html` into out_dir; returns the HTML path.

    closed_loop: image_id → (reading.json record, comparison.png) of the final readings, if run.
    Also writes out_dir/summary.tsv and out_dir/stacking_counts.json.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    closed_loop = dict(closed_loop or {})
    # The network's maps and statistics come from tasks that had a model.
    records = [{**r, "results": {t: v for t, v in r["results"].items() if "maps" in v}} if r.get("status") == "ok"
               else r for r in records]
    counts = stacking_counts(records)
    parts = ["<h1>vdwstack report</h1>"]
    parts += _summary_section(records, closed_loop, out)
    parts.append("<h2>Per image</h2>")
    for r in records:
        parts += _image_section(r, maps, out, closed_loop)
    parts += _statistics_section(records, maps, out, counts)
    if closed_loop:
        parts += _closed_loop_section(closed_loop)
    if evaluation:
        parts += _evaluation_section(evaluation)
    parts += _figures_section(out, extra_figures, loss_csvs)
    if bench_root and Path(bench_root).exists():
        parts += ["<h2>Run time per job</h2>", benchmark_table(bench_root).to_html(index=False, classes="tbl")]
    path = out / "index.html"
    path.write_text(page(parts), encoding="utf-8")
    (out / "stacking_counts.json").write_text(json.dumps(counts, indent=1))
    return path
