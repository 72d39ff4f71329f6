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
from vdwstack.report.page import details, error_paragraph, final_block, img_tag, page, table, warning_list
from vdwstack.report.tables import (
    ANSWER_COLUMNS,
    benchmark_table,
    candidates_table,
    details_table,
    domains_table,
    final_table,
    fit_table,
    hand_text,
    reading_text,
    slip_evaluation_table,
    stacking_counts,
)

log = logging.getLogger(__name__)

# image_id → (reading.json record, comparison.png): the final readings of the closed loop
ClosedLoop = Mapping[str, tuple[Mapping, str | Path]]


def _summary_section(records: Sequence[Mapping], closed_loop: ClosedLoop, out: Path) -> list[str]:
    """The answer table (final reading ± 95 % interval, agreement, hand, verdict, source); every
    column (the network's reading, pixel size, errors against a known truth) folded under it and
    written to out/summary.tsv."""
    full = final_table(records, closed_loop)
    full.to_csv(out / "summary.tsv", sep="\t", index=False)
    answer = full[[c for c in ANSWER_COLUMNS if c in full.columns]]
    return ["<h2>Readings</h2>",
            "<p>Final reading = the stacking whose simulation reproduces the image best (network proposal, "
            "its refinement and a global search, both hands for chiral lattices), with its calibrated 95 % "
            "interval; agreement = Pearson r of the band-passed image and simulation; hand = whether the "
            "image shows the lattice as is or its mirror image (chiral projections only).</p>",
            table(answer, float_format="%.3f"),
            details("Every column (as in summary.tsv): the network's reading, pixel size, errors against a "
                    "known truth", [table(full, float_format="%.4g")])]


def _statistics_section(records: Sequence[Mapping], maps: Mapping[str, str | Path], out: Path,
                        counts: Mapping[str, int]) -> list[str]:
    """Run-wide slip and twist histograms (drawn into out/) and the stacking-domain counts."""
    slip_png, twist_png = out / "slip_cell_histogram.png", out / "twist_histogram.png"
    slip_cell_histogram(records, maps, slip_png)
    twist_histogram(records, maps, twist_png)
    return ["<h2>Run-wide statistics</h2>",
            img_tag(slip_png, "Slips of all sliding-window predictions in the slip cell (Cartesian Å), each "
                              "with its symmetry-equivalent images; triangles: high-symmetry stackings; "
                              "black outline: one unit cell."),
            img_tag(twist_png, "Twist angles of all sliding-window predictions."),
            "<h3>Stacking domains</h3>",
            table(pd.DataFrame([counts]).T.rename(columns={0: "count"}), index=True)]


def _task_final(task: str, rec: Mapping) -> str:
    """One task's final reading block: value ± 95 % interval, hand, agreement, source, verdict and
    the final reading of each domain."""
    facts = f"hand: {hand_text(rec)} · agreement r = {rec['agreement']:.3f} · source: {rec['source']}"
    doms = domains_table(rec, task)
    extra = ([f"<p>{len(doms)} domains, each read on its own:</p>", table(doms, float_format="%.4g")]
             if len(doms) else [])
    return final_block(task, reading_text(rec, task), facts, rec["verdict"], extra)


def _network_text(net: Mapping, task: str) -> str:
    """The network's reading and how it was made: "D = (…) Å ± … Å; resnet50, 9 crops, spread 0.08 Å"."""
    model = net.get("model") or {}
    arch = model.get("architecture") if isinstance(model, Mapping) else model
    bits = [b for b in (arch, f"{net['n_crops']} crops" if net.get("n_crops") else None) if b]
    for key, unit in (("spread_A", " Å"), ("spread_deg", "°")):
        if net.get(key) is not None:
            bits.append(f"spread {net[key]:.3f}{unit}")
    return reading_text(net, task) + (f"; {', '.join(bits)}" if bits else "")


def _side_by_side(pairs: pd.DataFrame, per_row: int = 4) -> pd.DataFrame:
    """(quantity, value) rows laid out per_row pairs to a row, so a long list stays short."""
    cells = [x for row in pairs.itertuples(index=False) for x in row]
    cells += [""] * (-len(cells) % (2 * per_row))
    return pd.DataFrame([cells[i:i + 2 * per_row] for i in range(0, len(cells), 2 * per_row)])


def _reading_details(reading: Mapping, network_figure: list[str]) -> list[str]:
    """How one image's final readings were reached, folded: the network's value, the candidates and
    runner-up, the fitted pose and optics (per task), the network's maps, the warnings."""
    parts = []
    for task, rec in (reading.get("results") or {}).items():
        net = rec.get("network")
        text = _network_text(net, task) if net else "none (no trained model: the physics search alone)"
        parts.append(details(f"{task}: the network's reading", [f"<p>{html.escape(text)}</p>"]))
        cands = candidates_table(rec, task)
        if len(cands):
            parts.append(details(f"{task}: candidates and runner-up", [table(cands, float_format="%.4f")]))
        fit = fit_table(rec)
        if len(fit):
            parts.append(details(f"{task}: fitted pose and optics", [table(_side_by_side(fit), header=False)]))
    if network_figure:
        parts.append(details("The network's maps and domains", network_figure))
    warnings = reading.get("warnings") or []
    if warnings:
        parts.append(details(f"Warnings ({len(warnings)})", [warning_list(warnings)]))
    return parts


def _final_parts(image_id: str, reading: Mapping, comparison_png: str | Path, network_figure: list[str]) -> list[str]:
    """One image's final readings first, their comparison figure, then the folded details."""
    if reading.get("status") in ("skipped", "error"):
        return [error_paragraph(f"no final reading ({reading['status']}): "
                                f"{reading.get('message') or reading.get('error')}"),
                *([details("The network's maps and domains", network_figure)] if network_figure else [])]
    parts = [_task_final(task, rec) for task, rec in (reading.get("results") or {}).items()]
    if reading.get("status") == "no_match" and reading.get("message"):
        parts.append(error_paragraph(reading["message"]))
    if reading.get("status") == "ok":
        parts.append(img_tag(comparison_png, f"{image_id}: experimental crop | simulation of the final reading | "
                                             "difference (experiment − simulation); r = agreement."))
    return parts + _reading_details(reading, network_figure)


def _network_figure(record: Mapping, maps: Mapping[str, str | Path], out: Path) -> list[str]:
    """The network's maps of one image (drawn into out/images/), none without a model."""
    if not record["results"]:
        return []
    image_id = record["image_id"]
    png = out / "images" / f"{image_id}.png"
    image_figure(record, maps[image_id], png)
    cap = (f"{image_id} ({record['material']}): image; the network's map over it (slips coloured so that one "
           "stacking has one colour, key beside it), domain boundaries; scale bars in Å or nm.")
    truth = record.get("errors_vs_truth")
    if truth:
        cap += " Network's error against the known truth: " + ", ".join(f"{k} = {v:.3f}" for k, v in truth.items())
    return [img_tag(png, cap)]


def _image_section(record: Mapping, maps: Mapping[str, str | Path], out: Path, closed_loop: ClosedLoop) -> list[str]:
    """One image: its final readings first (or its error), the network's maps and how the reading
    was reached folded under them."""
    image_id = record["image_id"]
    meta = " · ".join(str(v) for v in (record.get("material"), record.get("task")) if v)
    head = f'<section class="image"><h3>{html.escape(image_id)} <span class="meta">{html.escape(meta)}</span></h3>'
    if record.get("status") != "ok":
        return [head, error_paragraph(f"error: {record.get('error')}"), "</section>"]
    network = _network_figure(record, maps, out)
    if image_id in closed_loop:
        return [head, *_final_parts(image_id, *closed_loop[image_id], network), "</section>"]
    parts = [head]
    for task, res in record["results"].items():  # closed loop off: the network's reading is the answer
        parts.append(final_block(task, reading_text(res, task), "source: network only (closed loop off)", "",
                                 note="± the spread of the network's crops, not a calibrated interval"))
    if network:
        parts.append(details("The network's maps and domains", network))
    return parts + ["</section>"]


def _closed_loop_section(closed_loop: ClosedLoop) -> list[str]:
    """How the final readings were reached: every reading's candidates, runner-up and fitted optics."""
    return ["<details><summary><b>How each reading was reached</b> (candidates, runner-up, fitted optics)"
            "</summary>",
            "<p>Every candidate — the network's proposal, its refinement, the global search's best stackings "
            "(slip grid, both slips of a trilayer, or a θ scan), in the image and its mirror for chiral "
            "lattices — is simulated and fitted to its image (rotation, scale, translation, defocus, source "
            "size); the final reading is the one that agrees best.</p>",
            table(details_table([c for c, _ in closed_loop.values()]), float_format="%.3f"), "</details>"]


def _twist_evaluation_text(ev: Mapping) -> str:
    """The twist MAE (°) of the model and of the FFT baseline, overall, below 3° and within 3° of 60°."""
    b3 = ev["below_3deg"]
    small = (f"below 3°: model {b3['model_mae_deg']:.2f}°, FFT {b3['fft_mae_deg']:.2f}°"
             if b3.get("model_mae_deg") is not None else "no test images below 3°")
    top = ev.get("within_3deg_of_max") or {}  # absent in evaluations written before it was added
    if top.get("model_mae_deg") is not None:
        small += (f"; within 3° of {top['twist_max_deg']:g}°: model {top['model_mae_deg']:.2f}°, "
                  f"FFT {top['fft_mae_deg']:.2f}°")
    return (f"<p>twist MAE {ev['model_mae_deg']:.2f}° (FFT baseline {ev['fft_mae_deg']:.2f}°, "
            f"{ev['fft_mae_mod_ambiguity_deg']:.2f}° modulo θ↔60°−θ; {small})</p>")


def _evaluation_section(evaluation: Mapping[str, Mapping]) -> list[str]:
    """One heading per evaluation: a ΔD table for slip models, the MAE line for twist models."""
    parts = ["<h2>Evaluation on held-out generated images</h2>"]
    for name, ev in evaluation.items():
        # an evaluation of neither kind gets no heading (nothing to show)
        if "models" in ev:
            parts += [f"<h3>{html.escape(name)} ({ev['material']}, {ev['n_test']} images)</h3>",
                      table(slip_evaluation_table(ev), float_format="%.3f")]
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
        parts.append(img_tag(out / "training_curves.png",
                             "Training losses of DRIT and of the slip and twist regressors."))
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
        parts += ["<h2>Run time per job</h2>", table(benchmark_table(bench_root))]
    path = out / "index.html"
    path.write_text(page(parts), encoding="utf-8")
    (out / "stacking_counts.json").write_text(json.dumps(counts, indent=1))
    return path
