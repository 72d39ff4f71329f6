"""The report stage: per-image figures, run-wide statistics and a standalone HTML page.

Inputs are the infer records (result.json + maps.npz per image), the evaluation JSON/PNG files
and the benchmark tables of earlier stages. Everything the page shows is embedded (base64 PNG),
so `results/report/index.html` opens from anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_figure(record: Mapping, maps_npz: str | Path, out_png: str | Path) -> None:
    """Image with the slip (or twist) map overlaid, domain boundaries, and the map's histogram."""
    plt = _plt()
    arr = np.load(maps_npz)
    tasks = list(record["results"])
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 4.2 * len(tasks)), squeeze=False)
    img = arr["image"]
    p = record["pixel_size_A"]
    ext_img = (0, img.shape[1] * p, img.shape[0] * p, 0)
    for ax_row, t in zip(axes, tasks):
        r = record["results"][t]
        ext = r["map_extent_A"]
        key, unit = ("Da_A", "Å") if t == "slip" else ("theta_deg", "°")
        m = arr[f"{t}_{key}"]
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax_row[0].imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext_img)
        ax_row[0].set_title(f"{record['image_id']} ({p:.4f} Å/px, {record['pixel_size_source']})", fontsize=9)
        ax_row[1].imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext_img)
        im = ax_row[1].imshow(m, cmap="twilight" if t == "twist" else "viridis", alpha=0.55, extent=ext,
                              interpolation="nearest")
        b = arr[f"{t}_boundaries"]
        if b.any():
            yy, xx = np.nonzero(b)
            step = r["map"]["stride_A"]
            ax_row[1].plot(ext[0] + (xx + 0.5) * step, ext[3] + (yy + 0.5) * step, "r.", ms=3, label="domain boundary")
            ax_row[1].legend(fontsize=7, loc="lower right")
        fig.colorbar(im, ax=ax_row[1], label=f"{key.split('_')[0]} ({unit})", shrink=0.8)
        ax_row[1].set_title(f"{t} map, window {r['map']['window_A']:.0f} Å, stride {r['map']['stride_A']:.1f} Å", fontsize=9)
        for ax in ax_row[:2]:
            ax.set_xlabel("x (Å)")
            ax.set_ylabel("y (Å)")
        if t == "slip":
            ax_row[2].hist2d(arr["slip_Da_A"].ravel(), arr["slip_Db_A"].ravel(), bins=30, cmap="viridis", cmin=1)
            ax_row[2].plot(r["Da_A"], r["Db_A"], "r+", ms=14, mew=2, label="whole image")
            ax_row[2].set_xlabel("Da (Å)")
            ax_row[2].set_ylabel("Db (Å)")
            ax_row[2].set_title(f"Da = {r['Da_A']:.3f}, Db = {r['Db_A']:.3f} Å ± {r['uncertainty_A']:.3f} Å", fontsize=9)
            ax_row[2].legend(fontsize=7)
        else:
            ax_row[2].hist(m.ravel(), bins=30, color="C1")
            ax_row[2].axvline(r["theta_deg"], color="k", ls="--", label="whole image")
            ax_row[2].set_xlabel("θ (°)")
            ax_row[2].set_ylabel("windows")
            ax_row[2].set_title(f"θ = {r['theta_deg']:.2f}° ± {r['uncertainty_deg']:.2f}°", fontsize=9)
            ax_row[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def slip_cell_histogram(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_png: str | Path) -> None:
    """2-D histogram of all map slips (Cartesian, canonical) per material, high-symmetry stackings marked."""
    from vdwstack.structures.names import stacking_names
    from vdwstack.structures.symmetry import symmetry_for

    plt = _plt()
    by_mat: dict[str, list[np.ndarray]] = {}
    for r in records:
        if r.get("status") == "ok" and "slip" in r["results"]:
            a = np.load(maps[r["image_id"]])
            by_mat.setdefault(r["material"], []).append(np.stack([a["slip_Da_A"].ravel(), a["slip_Db_A"].ravel()], -1))
    mats = sorted(by_mat) or ["(none)"]
    fig, axes = plt.subplots(1, len(mats), figsize=(4.6 * len(mats), 4.2), squeeze=False)
    for ax, mat in zip(axes[0], mats):
        if mat not in by_mat:
            ax.text(0.5, 0.5, "no slip results", ha="center", transform=ax.transAxes)
            continue
        sym = symmetry_for(mat)
        d = np.concatenate(by_mat[mat])
        xy = sym.slip_to_cartesian(d[:, 0], d[:, 1]).reshape(-1, 2)
        lat = sym.lattice
        reach = np.abs(lat).sum(axis=0) / 2 + 0.2
        edges = [np.arange(-r, r + 0.1, 0.1) for r in reach]  # 0.1 Å bins over the whole cell
        h = ax.hist2d(xy[:, 0], xy[:, 1], bins=edges, cmap="viridis", cmin=1)
        fig.colorbar(h[3], ax=ax, label="windows", shrink=0.8)
        for name, (da, db) in stacking_names(mat).items():
            c = sym.slip_to_cartesian(np.array(da), np.array(db)).reshape(2)
            ax.plot(*c, "r^", ms=9)
            ax.annotate(name, c, textcoords="offset points", xytext=(5, 5), color="r")
        cell = np.array([[0, 0], lat[0], lat[0] + lat[1], lat[1], [0, 0]]) - (lat[0] + lat[1]) / 2
        ax.plot(cell[:, 0], cell[:, 1], "k-", lw=0.8)
        ax.set_aspect("equal")
        ax.set_xlabel("Dx (Å)")
        ax.set_ylabel("Dy (Å)")
        ax.set_title(f"{mat}: slips of all map windows", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def twist_histogram(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_png: str | Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    vals = [np.load(maps[r["image_id"]])["twist_theta_deg"].ravel()
            for r in records if r.get("status") == "ok" and "twist" in r["results"]]
    if vals:
        ax.hist(np.concatenate(vals), bins=60, color="C1")
    else:
        ax.text(0.5, 0.5, "no twist results", ha="center", transform=ax.transAxes)
    ax.set_xlabel("θ (°)")
    ax.set_ylabel("map windows")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def training_curves(loss_csvs: Sequence[str | Path], out_png: str | Path) -> None:
    """Loss curves of DRIT (total and discriminator) and of every regressor (running mean of 25)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for path in loss_csvs:
        t = pd.read_csv(path)
        path = Path(path)
        if "iteration" in t:  # DRIT
            for col in ("total", "discriminator"):
                if col in t:
                    axes[0].plot(t["iteration"], t[col].rolling(25, min_periods=1).mean(), label=col)
        elif "step" in t:
            axes[1].plot(t["step"], t["loss"].rolling(25, min_periods=1).mean(),
                         label=f"{path.parent.parent.name} {path.parent.name}")
    axes[0].set(xlabel="iteration", ylabel="loss", title="DRIT")
    axes[1].set(xlabel="step", ylabel="loss (running mean)", title="regressors", yscale="log")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def summary_table(records: Sequence[Mapping]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {"image": r["image_id"], "material": r.get("material"), "task": r.get("task"), "status": r.get("status")}
        if r.get("status") == "ok":
            row.update(pixel_size_A=round(r["pixel_size_A"], 4), pixel_size_source=r["pixel_size_source"])
            for t, res in r["results"].items():
                if t == "slip":
                    row.update(Da_A=round(res["Da_A"], 3), Db_A=round(res["Db_A"], 3),
                               slip_uncertainty_A=round(res["uncertainty_A"], 3), stacking=res["stacking"],
                               slip_domains=res["n_domains"])
                else:
                    row.update(theta_deg=round(res["theta_deg"], 2), theta_uncertainty_deg=round(res["uncertainty_deg"], 2))
            for k, v in (r.get("errors_vs_truth") or {}).items():
                row[f"error_{k}"] = round(v, 3)
        else:
            row["error"] = r.get("error")
        rows.append(row)
    return pd.DataFrame(rows)


def closed_loop_table(checks: Sequence[Mapping]) -> pd.DataFrame:
    """One row per closed-loop check (whole image and domains): reading, agreement, refined reading,
    change and warnings."""
    rows = []
    for c in checks:
        if c.get("status") != "ok":
            rows.append({"image": c.get("image_id"), "status": c.get("status"),
                         "warnings": c.get("message") or c.get("error")})
            continue
        for ch in c["checks"]:
            unit = "deg" if ch["task"] == "twist" else "A"
            row = {"image": c["image_id"], "status": "ok", "task": ch["task"], "region": ch["region"],
                   **{f"reading_{k}": v for k, v in ch["reading"].items()}, "agreement": ch["agreement"]}
            if "refined" in ch:
                row.update({f"refined_{k}": v for k, v in ch["refined"].items()})
                row.update(refined_agreement=ch["refined_agreement"], **{f"change_{unit}": ch[f"change_{unit}"]})
            alt = ch.get("alternative")
            if alt:
                row.update({f"alternative_{k}": alt[k] for k in ("Da_A", "Db_A", "theta_deg") if k in alt})
                row.update(alternative_agreement=alt["agreement"], alternative_fits_better=alt["fits_better"])
            row.update(pixel_size_fit_A=ch["fit"]["pixel_size_A"], defocus_A=ch["fit"]["defocus_A"],
                       source_fwhm_A=ch["fit"]["source_fwhm_A"], warnings="; ".join(ch["warnings"]))
            rows.append(row)
    return pd.DataFrame(rows)


def _closed_loop_summary(check: Mapping) -> dict:
    """The closed-loop columns of the summary table for one image."""
    if check.get("status") != "ok":
        return {"closed_loop": check.get("status")}
    out = {"closed_loop": "ok", "agreement": check.get("agreement")}
    for k in ("refined_Da_A", "refined_Db_A", "refined_Da2_A", "refined_Db2_A", "refined_theta_deg",
              "change_A", "change_deg"):
        if k in check:
            out[k] = check[k]
    alts = []
    for task, alt in (check.get("alternative") or {}).items():
        value = (f"θ = {alt['theta_deg']:.2f}°" if "theta_deg" in alt
                 else f"D = ({alt['Da_A']:.2f}, {alt['Db_A']:.2f}) Å")
        alts.append(f"{value}, r = {alt['agreement']:.3f}" + (" (fits better)" if alt.get("fits_better") else ""))
    if alts:
        out["alternative"] = "; ".join(alts)
    out["warnings"] = len(check.get("warnings", []))
    return out


def stacking_counts(records: Sequence[Mapping]) -> dict[str, int]:
    """How many slip domains of each named stacking, and how many images hold ≥ 2 stackings."""
    c: Counter = Counter()
    coexist = 0
    for r in records:
        if r.get("status") == "ok" and "slip" in r["results"]:
            names = [d.get("stacking", "other") for d in r["results"]["slip"]["domains"]]
            c.update(f"{r['material']} {n}" for n in names)
            coexist += len(r["results"]["slip"]["domains"]) > 1
    return {**dict(c), "images with coexisting domains": coexist}


def benchmark_table(bench_root: str | Path) -> pd.DataFrame:
    rows = []
    for f in sorted(Path(bench_root).rglob("*.tsv")):
        try:
            t = pd.read_csv(f, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if "s" in t:
            rule = f.relative_to(bench_root).with_suffix("")
            rows.append({"job": str(rule), "seconds": round(float(t["s"].iloc[-1]), 1),
                         "max_rss_MB": round(float(t.get("max_rss", pd.Series([np.nan])).iloc[-1]), 0)})
    return pd.DataFrame(rows)


def _img_tag(path: str | Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_dir: str | Path,
                 extra_figures: Sequence[tuple[str | Path, str]] = (), bench_root: str | Path | None = None,
                 evaluation: Mapping[str, Mapping] | None = None, loss_csvs: Sequence[str | Path] = (),
                 closed_loop: Mapping[str, tuple[Mapping, str | Path]] | None = None) -> Path:
    """Write figures and `index.html` into out_dir; returns the HTML path.

    closed_loop: image_id → (check.json record, comparison.png) of the closed-loop check, if run.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    closed_loop = dict(closed_loop or {})
    parts = ["<h1>vdwstack report</h1>"]
    table = summary_table(records)
    if closed_loop and len(table):
        extra = pd.DataFrame([_closed_loop_summary(closed_loop[i][0]) if i in closed_loop else {}
                              for i in table["image"]])
        table = pd.concat([table, extra], axis=1)
    table.to_csv(out / "summary.tsv", sep="\t", index=False)
    parts += ["<h2>All images</h2>", table.to_html(index=False, na_rep="", classes="tbl", escape=True)]
    slip_png, twist_png = out / "slip_cell_histogram.png", out / "twist_histogram.png"
    slip_cell_histogram(records, maps, slip_png)
    twist_histogram(records, maps, twist_png)
    counts = stacking_counts(records)
    parts += ["<h2>Run-wide statistics</h2>",
              _img_tag(slip_png, "Slips of all sliding-window predictions in the slip cell (Cartesian Å); "
                                 "triangles: high-symmetry stackings; white: one unit cell."),
              _img_tag(twist_png, "Twist angles of all sliding-window predictions."),
              "<h3>Stacking domains</h3>",
              pd.DataFrame([counts]).T.rename(columns={0: "count"}).to_html(classes="tbl")]
    parts.append("<h2>Per image</h2>")
    for r in records:
        if r.get("status") != "ok":
            parts.append(f'<h3>{html.escape(r["image_id"])}</h3><p class="err">error: {html.escape(str(r.get("error")))}</p>')
            continue
        png = out / "images" / f"{r['image_id']}.png"
        image_figure(r, maps[r["image_id"]], png)
        truth = r.get("errors_vs_truth")
        cap = f"{r['image_id']} ({r['material']}): image, map overlay with domain boundaries, histogram."
        if truth:
            cap += " Error against the known truth: " + ", ".join(f"{k} = {v:.3f}" for k, v in truth.items())
        parts += [f"<h3>{html.escape(r['image_id'])}</h3>", _img_tag(png, cap)]
        if r["image_id"] in closed_loop:
            check, cl_png = closed_loop[r["image_id"]]
            if check.get("status") == "ok":
                parts.append(_img_tag(cl_png, f"{r['image_id']}: closed-loop check — experimental crop, the "
                                              "re-simulated (refined) reading, difference; r = agreement."))
            for w in check.get("warnings", []) or [check.get("message") or check.get("error")]:
                if w:
                    parts.append(f'<p class="err">closed loop: {html.escape(str(w))}</p>')
    if closed_loop:
        parts += ["<h2>Closed-loop check</h2>",
                  "<p>Every reading re-simulated and fitted to its image (rotation, scale, translation, "
                  "defocus, source size); agreement = Pearson r of the band-passed crop and simulation; "
                  "refined = the reading that maximises it near the reading; alternative = the best "
                  "stacking of a global search (slip grid or twist scan, then refined), shown beside the "
                  "reading, never instead of it.</p>",
                  closed_loop_table([c for c, _ in closed_loop.values()]).to_html(
                      index=False, na_rep="", classes="tbl", float_format="%.3f", escape=True)]
    if evaluation:
        parts.append("<h2>Evaluation on held-out generated images</h2>")
        for name, ev in evaluation.items():
            if "models" in ev:
                rows = [{"training grid": k, "step (Å)": v.get("train_step_A"), "mean ΔD (Å)": v["mean"],
                         "median ΔD (Å)": v["median"], "P95 ΔD (Å)": v["p95"]} for k, v in ev["models"].items()]
                rows.append({"training grid": "constant prediction", "mean ΔD (Å)": ev["baseline_constant"]["mean"],
                             "median ΔD (Å)": ev["baseline_constant"]["median"], "P95 ΔD (Å)": ev["baseline_constant"]["p95"]})
                parts += [f"<h3>{html.escape(name)} ({ev['material']}, {ev['n_test']} images)</h3>",
                          pd.DataFrame(rows).to_html(index=False, float_format="%.3f", classes="tbl")]
            elif "model_mae_deg" in ev:
                b3 = ev["below_3deg"]
                small = (f"below 3°: model {b3['model_mae_deg']:.2f}°, FFT {b3['fft_mae_deg']:.2f}°"
                         if b3.get("model_mae_deg") is not None else "no test images below 3°")
                parts += [f"<h3>{html.escape(name)} ({ev['material']}, {ev['n_test']} images)</h3>"
                          f"<p>twist MAE {ev['model_mae_deg']:.2f}° (FFT baseline {ev['fft_mae_deg']:.2f}°, "
                          f"{ev['fft_mae_mod_ambiguity_deg']:.2f}° modulo θ↔60°−θ; {small})</p>"]
    if extra_figures or loss_csvs:
        parts.append("<h2>Training and evaluation figures</h2>")
    if loss_csvs:
        training_curves(loss_csvs, out / "training_curves.png")
        parts.append(_img_tag(out / "training_curves.png", "Training losses of DRIT and of the slip and twist regressors."))
    if extra_figures:
        parts += [_img_tag(p, c) for p, c in extra_figures if Path(p).exists()]
    if bench_root and Path(bench_root).exists():
        parts += ["<h2>Run time per job</h2>", benchmark_table(bench_root).to_html(index=False, classes="tbl")]
    style = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
             "figcaption{font-size:0.9em;color:#444}.tbl{border-collapse:collapse;font-size:0.85em}"
             ".tbl td,.tbl th{border:1px solid #ccc;padding:2px 6px}.err{color:#b00}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vdwstack report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    (out / "stacking_counts.json").write_text(json.dumps(counts, indent=1))
    return path
