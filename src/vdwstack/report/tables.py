"""The report's tables: pandas DataFrames and counts built from the records of earlier stages.

Column names carry their units (``_A`` Å, ``_deg`` degrees, ``_MB`` megabytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _result_columns(record: Mapping) -> dict:
    """Pixel size, the readings of every task and the errors against the truth of one ok record."""
    row = {"pixel_size_A": round(record["pixel_size_A"], 4), "pixel_size_source": record["pixel_size_source"]}
    for t, res in record["results"].items():
        if t == "slip":
            row.update(Da_A=round(res["Da_A"], 3), Db_A=round(res["Db_A"], 3),
                       slip_uncertainty_A=round(res["uncertainty_A"], 3), stacking=res["stacking"],
                       slip_domains=res["n_domains"])
        else:
            row.update(theta_deg=round(res["theta_deg"], 2), theta_uncertainty_deg=round(res["uncertainty_deg"], 2))
    for k, v in (record.get("errors_vs_truth") or {}).items():
        row[f"error_{k}"] = round(v, 3)
    return row


def summary_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """One row per infer record: image, material, task, status, then its readings or its error."""
    rows = []
    for r in records:
        row = {"image": r["image_id"], "material": r.get("material"), "task": r.get("task"), "status": r.get("status")}
        if r.get("status") == "ok":
            row.update(_result_columns(r))
        else:
            row["error"] = r.get("error")
        rows.append(row)
    return pd.DataFrame(rows)


def _check_row(image_id: str, ch: Mapping) -> dict:
    """The table row of one closed-loop check (one task, one region) of an ok closed-loop record."""
    unit = "deg" if ch["task"] == "twist" else "A"
    row = {"image": image_id, "status": "ok", "task": ch["task"], "region": ch["region"],
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
    return row


def closed_loop_table(checks: Sequence[Mapping]) -> pd.DataFrame:
    """One row per closed-loop check (whole image and domains): reading, agreement, refined reading,
    change and warnings."""
    rows = []
    for c in checks:
        if c.get("status") != "ok":
            rows.append({"image": c.get("image_id"), "status": c.get("status"),
                         "warnings": c.get("message") or c.get("error")})
            continue
        rows.extend(_check_row(c["image_id"], ch) for ch in c["checks"])
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


def summary_with_closed_loop(records: Sequence[Mapping], closed_loop: Mapping[str, tuple[Mapping, object]]
                             ) -> pd.DataFrame:
    """The summary table, with the closed-loop columns appended when any check ran.

    closed_loop: image_id → (check.json record, comparison figure); images without a check get
    empty closed-loop cells.
    """
    table = summary_table(records)
    if closed_loop and len(table):
        extra = pd.DataFrame([_closed_loop_summary(closed_loop[i][0]) if i in closed_loop else {}
                              for i in table["image"]])
        table = pd.concat([table, extra], axis=1)
    return table


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


def slip_evaluation_table(ev: Mapping) -> pd.DataFrame:
    """ΔD statistics (Å) of each slip model of one evaluation, and of the constant-prediction baseline."""
    rows = [{"training grid": k, "step (Å)": v.get("train_step_A"), "mean ΔD (Å)": v["mean"],
             "median ΔD (Å)": v["median"], "P95 ΔD (Å)": v["p95"]} for k, v in ev["models"].items()]
    base = ev["baseline_constant"]
    rows.append({"training grid": "constant prediction", "mean ΔD (Å)": base["mean"],
                 "median ΔD (Å)": base["median"], "P95 ΔD (Å)": base["p95"]})
    return pd.DataFrame(rows)


def benchmark_table(bench_root: str | Path) -> pd.DataFrame:
    """Wall time (s) and peak memory (MB) of the last run of every job with a Snakemake benchmark TSV."""
    rows = []
    for f in sorted(Path(bench_root).rglob("*.tsv")):
        try:
            t = pd.read_csv(f, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue  # a benchmark still being written or broken: leave it out rather than fail the report
        if "s" in t:
            rule = f.relative_to(bench_root).with_suffix("")
            rows.append({"job": str(rule), "seconds": round(float(t["s"].iloc[-1]), 1),
                         "max_rss_MB": round(float(t.get("max_rss", pd.Series([np.nan])).iloc[-1]), 0)})
    return pd.DataFrame(rows)
