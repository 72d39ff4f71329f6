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
            drift = res.get("twist_from_slip_map")
            if drift:  # a bilayer's small twist read from its slip map's drift
                row.update(slip_map_twist_deg=round(drift["theta_deg"], 3),
                           slip_map_twist_sigma_deg=round(drift["sigma_deg"], 3),
                           slip_map_twist_lower_bound=drift["lower_bound"])
        else:
            row.update(theta_deg=round(res["theta_deg"], 2), theta_uncertainty_deg=round(res["uncertainty_deg"], 2))
            align = res.get("alignment")
            if align:  # a small twist's partner θ_max − θ (AA′-like for AA-like) may be as likely
                row.update(theta_partner_deg=round(align["theta_partner_deg"], 2),
                           theta_alignment_decided=align["decided"])
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


def reading_text(rec: Mapping, task: str, prefix: str = "") -> str:
    """A reading as people write it: "D = (2.100, −0.800) ± 0.015 Å", "θ = 7.30 ± 0.05°"."""
    g = {k: rec.get(prefix + k) for k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg", "uncertainty_A",
                                          "uncertainty_deg")}
    if task == "twist":
        if g["theta_deg"] is None:
            return ""
        text = f"θ = {g['theta_deg']:.2f}°"
        return text + (f" ± {g['uncertainty_deg']:.2f}°" if g["uncertainty_deg"] is not None else "")
    if g["Da_A"] is None:
        return ""
    text = f"D = ({g['Da_A']:.3f}, {g['Db_A']:.3f}) Å"
    if g["Da2_A"] is not None:
        text += f", D2 = ({g['Da2_A']:.3f}, {g['Db2_A']:.3f}) Å"
    return text + (f" ± {g['uncertainty_A']:.3f} Å" if g["uncertainty_A"] is not None else "")


def hand_text(rec: Mapping) -> str:
    """The hand of a final reading: "as is" or "mirrored" with both agreements, ", undecided" when
    they are closer than the hand margin; "n/a (achiral)" for materials whose projection has a mirror."""
    if "hand" not in rec:
        return "n/a (achiral)"
    h = rec["hand"]
    name = "mirrored" if rec.get("mirrored") else "as is"
    # A final reading weighs the hands by agreement; a network's reading by how far each hand's
    # features lie off the model's encoding.
    key, what = ("agreement", "r") if "agreement_as_is" in h else ("residual", "feature residual")
    return (f"{name} ({what} {h[f'{key}_as_is']:.3f} as is, {h[f'{key}_mirrored']:.3f} mirrored)"
            + ("" if h["decided"] else ", undecided"))

# The answer columns the report page shows first (summary.tsv keeps every column).
ANSWER_COLUMNS = ["image", "material", "task", "status", "reading", "agreement", "hand", "verdict", "source"]


def final_rows(reading: Mapping) -> list[dict]:
    """The rows of one image's final record (reading.json): one per task, the answer first."""
    base = {"image": reading.get("image_id"), "material": reading.get("material")}
    if reading.get("status") in ("skipped", "error"):
        return [{**base, "status": reading["status"], "reading": "",
                 "verdict": reading.get("message") or reading.get("error")}]
    rows = []
    for task, rec in reading["results"].items():
        net = rec.get("network") or {}
        row = {**base, "task": task, "status": rec["status"], "reading": reading_text(rec, task),
               "agreement": rec["agreement"], "hand": hand_text(rec), "source": rec["source"],
               "verdict": rec["verdict"],
               "network reading": reading_text(net, task) if net else "no model",
               "pixel_size_A": round(reading["pixel_size_A"], 4), "pixel_size_source": reading.get("pixel_size_source"),
               "domains": len(rec.get("domains", [])), "warnings": len(rec.get("warnings", []))}
        for k, v in (reading.get("errors_vs_truth") or {}).items():
            if k.endswith("dD_A") == (task == "slip"):
                row[f"error {k}"] = round(v, 4)
        rows.append(row)
    return rows


def final_table(records: Sequence[Mapping], closed_loop: Mapping[str, tuple[Mapping, object]]) -> pd.DataFrame:
    """The answer table: one row per image and task, the final reading with its 95 % interval, the
    agreement, hand, source and verdict first; the network's reading and the rest beside them.
    Images without a final record (closed loop switched off) show the network's reading."""
    rows = []
    for r in records:
        if r["image_id"] in closed_loop:
            rows += final_rows(closed_loop[r["image_id"]][0])
        elif r.get("status") == "ok":
            for task, res in r["results"].items():
                rows.append({"image": r["image_id"], "material": r["material"], "task": task, "status": "ok",
                             "reading": "", "source": "network only (closed loop off)",
                             "network reading": reading_text(res, task)})
        else:
            rows.append({"image": r["image_id"], "material": r.get("material"), "status": r.get("status"),
                         "verdict": r.get("error")})
    return pd.DataFrame(rows)


def details_table(readings: Sequence[Mapping]) -> pd.DataFrame:
    """Every final reading (whole image and domains) with its candidates, runner-up and fitted optics."""
    rows = []
    for rd in readings:
        for task, rec in (rd.get("results") or {}).items():
            for region, r in [("whole image", rec)] + [(f"domain {d['id']}", d) for d in rec.get("domains", [])
                                                       if "agreement" in d]:
                row = {"image": rd["image_id"], "task": task, "region": region, "reading": reading_text(r, task),
                       "agreement": r["agreement"], "source": r["source"], "mirrored": r["mirrored"]}
                for name, c in (r.get("candidates") or {}).items():
                    row[f"{name}"] = f"{reading_text(c, task)} (r {c['agreement']:.3f})"
                if r.get("runner_up"):
                    row["runner-up"] = f"{reading_text(r['runner_up'], task)} (r {r['runner_up']['agreement']:.3f})"
                fit = r.get("fit") or {}
                row.update({k: fit.get(k) for k in ("pixel_size_A", "defocus_A", "source_fwhm_A")})
                rows.append(row)
    return pd.DataFrame(rows)


def candidates_table(rec: Mapping, task: str) -> pd.DataFrame:
    """One final reading's contenders: each candidate (network, refined, search) and the runner-up
    with its reading, agreement r, hand and distance from the final reading (Å or °)."""
    unit = "deg" if task == "twist" else "A"
    rows = [{"candidate": name, "reading": reading_text(c, task), "agreement": c.get("agreement"),
             "mirrored": c.get("mirrored"), f"distance from final ({'°' if unit == 'deg' else 'Å'})":
                 c.get(f"distance_{unit}")} for name, c in (rec.get("candidates") or {}).items()]
    ru = rec.get("runner_up")
    if ru:
        rows.append({"candidate": f"runner-up ({ru.get('source')}; margin {rec.get('margin', float('nan')):.3f})",
                     "reading": reading_text(ru, task), "agreement": ru.get("agreement"),
                     "mirrored": ru.get("mirrored")})
    return pd.DataFrame(rows)


def fit_table(rec: Mapping) -> pd.DataFrame:
    """The fitted pose and optics of a final reading as (quantity, value) rows; standard errors
    of the fitted parameters as "σ <name>" rows."""
    fit = dict(rec.get("fit") or {})
    sigma = fit.pop("standard_errors", None) or {}
    rows = [{"quantity": k, "value": v} for k, v in fit.items()]
    rows += [{"quantity": f"σ {k}", "value": v} for k, v in sigma.items()]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def domains_table(rec: Mapping, task: str) -> pd.DataFrame:
    """The final reading of each slip domain of one task: id, area (nm²), named stacking, reading,
    agreement, hand and verdict; empty when the image has fewer than two domains."""
    rows = []
    for d in rec.get("domains", []):
        if "agreement" not in d:
            continue  # a domain too small to be read on its own
        rows.append({"domain": d["id"], "area (nm²)": round(d.get("area_nm2", float("nan")), 1),
                     "stacking": d.get("stacking"), "reading": reading_text(d, task) or d.get("status"),
                     "agreement": d["agreement"], "hand": hand_text(d), "verdict": d.get("verdict")})
    return pd.DataFrame(rows)


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
