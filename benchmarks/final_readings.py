"""Final readings on the project's independent test images, the interval calibration, and the
shared experimental images.

1. Every image of ``benchmarks/data/independent/<set>/<task>/`` (made by
   ``benchmarks/independent_images.py``: another renderer, aberrations, drift, contamination,
   vacancies, shot noise, mirrored ReS2, a few multislice) is read by
   :func:`vdwstack.closed_loop.estimate.estimate_reading`, with the network's proposal when a
   trained model exists under ``--models`` (else by the search alone), at the image's calibrated
   pixel size. Scores (``benchmarks/metrics.py``): ΔD / |Δθ| of the final and of the network
   reading, coverage of the 95 % interval, hand, failures, time per reading.
2. ``--calibrate``: the interval's calibration (Σ = k²·Σ_fit + f²) fitted on the ``calibration``
   set: for each floor f the scale k whose intervals cover ⌈(n + 1)·95 %⌉ of the n truths (the
   split-conformal quantile, which holds 95 % on new images where covering 95 % of a few dozen
   calibration images does not), keeping the pair with the narrowest mean interval; twists read
   within ``aligned_twist_warning_deg`` (5°) of an aligned stacking get their own k (the calibration
   set holds 24 small twists per alignment). Written to the JSON; the defaults of ClosedLoopSettings (``interval_scale_slip``,
   ``interval_scale_twist``, ``interval_scale_twist_aligned``, ``interval_floor_A``,
   ``interval_floor_deg``) are set from it by hand.
   The test set's coverage is then re-scored with the calibrated pair.
3. ``--shared``: the nine shared experimental images (pixel size from their Bragg spots): final
   reading, interval, hand with both agreements, runner-up.

    .venv/bin/python benchmarks/final_readings.py --set calibration --calibrate
    .venv/bin/python benchmarks/final_readings.py --set test [--limit 8] [--shared]

``--config`` reads the networks as a run's inference does (its ``infer`` block: quarter turns, fields,
mirrored views, ...; several files merge in order, as Snakemake's ``--configfile``), e.g.
``--config config/config.yaml config/cpu_hour.yaml --network-only --models <run>/results/models``.

The AA′-like twists (θ in [30°, 59.5°], task ``MoS2_twist_AAprime``) are a default task: the twist's
interval calibration spans both alignments. An image the network refuses
(smaller than its smallest field) is read by the search alone (``network_refused`` in its record).

Writes benchmarks/results/final_readings_<set>.json (per-image records and scores).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import metrics  # noqa: E402

from vdwstack.closed_loop import ClosedLoopSettings, estimate_reading  # noqa: E402
from vdwstack.closed_loop.record import estimate_record  # noqa: E402
from vdwstack.closed_loop.uncertainty import interval_radius  # noqa: E402
from vdwstack.core.images import read_image  # noqa: E402
from vdwstack.infer.settings import InferenceSettings  # noqa: E402
from vdwstack.infer.stage import read_truth  # noqa: E402
from vdwstack.structures.symmetry import symmetry_for  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "independent"
SHARED = ROOT.parent / "shared" / "data" / "experimental"
SHARED_TASKS = {"MoS2_twisted_bilayer.png": ("MoS2", 2, "twist"), "ReS2_trilayer.png": ("ReS2", 3, "slip")}


def merged_infer_settings(paths: list[Path]) -> InferenceSettings:
    """The ``infer`` block of workflow config files merged in order (a later file's keys win, as with
    Snakemake's ``--configfile``); the defaults without files. Each file is read and checked as
    ``vdwstack infer --config`` reads one: unreadable, not a mapping, or a bad key or value raises
    ValueError / ConfigError naming it."""
    from vdwstack.config import inference_blocks

    block: dict = {}
    for path in paths:
        block.update(inference_blocks(path)["infer"])
    return InferenceSettings.from_mapping(block)


def network_proposal(models: Path | None, image: np.ndarray, p: float, material: str, layers: int, task: str,
                     infer: InferenceSettings = InferenceSettings()) -> dict | None:
    """The network's whole-image reading as inference with `infer` makes it (None without a model for the
    material)."""
    if models is None:
        return None
    from vdwstack.infer.reading import infer_image
    from vdwstack.regress.model import Regressor, find_model

    folder = find_model(models, task, material, layers)
    if folder is None:
        return None
    rec = infer_image(image, p, Regressor(folder), infer).record
    keys = ["theta_deg"] if task == "twist" else ["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if layers == 3 else [])
    return {**{k: rec[k] for k in keys}, "mirrored": rec["mirrored"],
            **({"alignment": rec["alignment"]} if "alignment" in rec else {})}


def read_one(image: np.ndarray, p: float, material: str, layers: int, task: str, models: Path | None,
             settings: ClosedLoopSettings, infer: InferenceSettings = InferenceSettings()) -> dict:
    """One final reading as a flat record (+ the network's values, the fit's covariance, seconds)."""
    t0 = time.perf_counter()
    try:
        proposal, refused = network_proposal(models, image, p, material, layers, task, infer), None
    except ValueError as e:  # e.g. an image smaller than the model's smallest field: the search alone reads it
        proposal, refused = None, str(e)
    est = estimate_reading(image, p, material, layers, task, proposal, settings)
    rec = estimate_record(est)
    if refused is not None:
        rec["network_refused"] = refused
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    rec.update({f"network_{k}": v for k, v in (proposal or {}).items()})
    if est.interval is not None:
        rec["covariance"] = est.interval.covariance
        rec["parameters"] = list(est.interval.sigma)
    return rec


def _task_images(set_name: str, tasks: list[str], limit: int | None):
    """(task, iterator of (manifest row, image, truth)) for each task of the set that has been
    generated (the first `limit` images); a task without a manifest is skipped with a message."""
    for task in tasks:
        folder = DATA / set_name / task
        if not (folder / "manifest.tsv").exists():
            print(f"{folder}: no manifest, skipped (run benchmarks/independent_images.py)", flush=True)
            continue
        with open(folder / "manifest.tsv") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))[:limit]
        yield task, _read_rows(folder, rows)


def _read_rows(folder: Path, rows: list[dict]):
    for row in rows:
        yield row, read_image(folder / row["path"])[0], read_truth(folder / row["path"])


def _error(record: dict, truth: dict, prefix: str = "") -> float:
    """|Δθ| (degrees) or ΔD (Å) of a reading (``prefix="network_"``: the network's values) against its truth."""
    if truth["task"] == "twist":
        return metrics.twist_error(record, truth, prefix)
    return metrics.slip_error(record, truth, prefix)


def _drawn_settings(path: Path) -> dict:
    """The numeric optics and degradation values an independent image was rendered with."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        meta = json.loads(tf.pages[0].description or "{}")
    return {k: v for k, v in meta.get("optics", {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def network_errors(set_name: str, tasks: list[str], limit: int | None, models: Path,
                   per_image: dict | None = None, infer: InferenceSettings = InferenceSettings()) -> dict:
    """The networks alone on the independent set: whole-image readings as inference makes them
    (rescaled to each model's pixel size, crops × 4 quarter turns, both hands of a chiral lattice),
    scored against the truth. `per_image`: filled with task → one row per image (error, truth,
    reading, hands, the drawn optics) — what tells which images fail and why."""
    out = {}
    for task, images in _task_images(set_name, tasks, limit):
        errs = []
        rows = per_image.setdefault(task, []) if per_image is not None else []
        for row, image, truth in images:
            try:
                prop = network_proposal(models, image, float(row["pixel_size_A"]), truth["material"],
                                        int(truth["layers"]), truth["task"], infer)
            except ValueError as e:  # e.g. an image smaller than the model's smallest field
                print(f"{set_name}/{task}/{row['image_id']}: {e}", flush=True)
                continue
            if prop is None:
                break
            errs.append(_error({f"network_{k}": v for k, v in prop.items()}, truth, "network_"))
            rows.append({"image_id": row["image_id"], "error": errs[-1],
                         "truth": {k: v for k, v in truth.items() if k.endswith(("_A", "_deg")) or k == "mirrored"},
                         "network": prop, "optics": _drawn_settings(DATA / set_name / task / row["path"])})
        if errs:
            out[task] = {**metrics.summary(errs), "unit": "degree" if "twist" in task else "Å"}
            aligned = [r for r in rows if "alignment" in r["network"]]
            if aligned:  # twists: readings whose AA-like / AA′-like alignment the features leave undecided
                undecided = [not r["network"]["alignment"]["decided"] for r in aligned]
                decided_errs = [r["error"] for r, u in zip(aligned, undecided) if not u]
                out[task]["alignment"] = {"n_undecided": int(sum(undecided)),
                                          "undecided_errors_deg": [round(r["error"], 2) for r, u in zip(aligned, undecided) if u],
                                          "decided": metrics.summary(decided_errs) if decided_errs else None}
            hands = {m: [r["error"] for r in rows if bool(r["truth"].get("mirrored")) == m] for m in (False, True)}
            if hands[True]:  # a chiral lattice with mirrored images: each hand's share
                out[task]["by_hand"] = {("mirrored" if m else "as imaged"): metrics.summary(e) for m, e in hands.items()
                                      if e}
                out[task]["hand_right"] = sum(bool(r["network"].get("mirrored")) == bool(r["truth"].get("mirrored"))
                                              for r in rows)
            print(f"{set_name}/{task}: network alone {json.dumps(out[task])}", flush=True)
    return out


def run_set(set_name: str, tasks: list[str], limit: int | None, models: Path | None,
            settings: ClosedLoopSettings, partial: Path | None = None,
            infer: InferenceSettings = InferenceSettings()) -> dict:
    out = {}
    for task, images in _task_images(set_name, tasks, limit):
        records, truths = [], []
        for row, image, truth in images:
            rec = read_one(image, float(row["pixel_size_A"]), truth["material"], int(truth["layers"]),
                           truth["task"], models, settings, infer)
            rec.update(image_id=row["image_id"], renderer=row.get("renderer"))
            records.append(rec)
            truths.append(truth)
            err = _error(rec, truth)
            print(f"{set_name}/{task}/{row['image_id']}: {rec['status']} err {err:.4f} "
                  f"± {rec.get('uncertainty_A', rec.get('uncertainty_deg', float('nan'))):.4f} "
                  f"r {rec['agreement']:.3f} {rec['source']} mirrored {rec['mirrored']} "
                  f"(truth {truth.get('mirrored')}) {rec['seconds']:.1f} s", flush=True)
        out[task] = {"records": records, "truths": truths, "scores": metrics.score(records, truths),
                     "seconds_per_reading": float(np.mean([r["seconds"] for r in records]))}
        if partial is not None:  # a long run keeps what it has measured
            partial.write_text(json.dumps({t: {k: v for k, v in r.items() if k != "truths"} for t, r in out.items()},
                                          default=float))
    return out


def calibration_kind(record: dict, truth: dict,
                     band_deg: float = ClosedLoopSettings().aligned_twist_warning_deg) -> str:
    """Which calibration a reading's interval takes: slip, twist, or twist_aligned (a twist read
    within `band_deg` of an aligned stacking: its own factor, see ClosedLoopSettings)."""
    if truth["task"] != "twist":
        return truth["task"]
    near = symmetry_for(truth["material"]).near_aligned_twist(record["theta_deg"], band_deg)
    return "twist_aligned" if near else "twist"


def rescored(records: list[dict], truths: list[dict], calibration: dict) -> list[dict]:
    """The records with their intervals recomputed from the stored covariance for another
    calibration {"slip"|"twist"|"twist_aligned": {"scale": k, "floor": f}} (a kind left out keeps
    k = 1, f = 0)."""
    out = []
    for r, t in zip(records, truths):
        r = dict(r)
        if r.get("covariance") is not None:
            c = calibration.get(calibration_kind(r, t), {})
            rad = interval_radius(t["material"], t["task"] == "twist", r["parameters"], np.array(r["covariance"]),
                                  c.get("scale", 1.0), c.get("floor", 0.0))
            r["uncertainty_deg" if t["task"] == "twist" else "uncertainty_A"] = rad
        out.append(r)
    return out


GROSS = {"slip": 0.5, "twist": 5.0, "twist_aligned": 5.0}  # Å, degrees: a wrong basin (another stacking), not a precision
LEVEL = 0.95


def required_covered(n: int, level: float = LEVEL) -> int:
    """How many of n calibration readings an interval must cover for `level` on a new image:
    ⌈(n + 1)·level⌉ (capped at n), the split-conformal quantile. Covering ⌈n·level⌉ of them — the
    plain empirical quantile — promises less than `level` on new images when n is a few dozen
    (n = 23: 22 of 23, i.e. about 92 %)."""
    return min(n, int(np.ceil((n + 1) * level)))


def _kind_records(results: dict, kind: str) -> tuple[list[dict], list[dict]]:
    recs, truths = [], []
    for task in results.values():
        for r, t in zip(task["records"], task["truths"]):
            if r.get("covariance") is not None and calibration_kind(r, t) == kind:
                recs.append(r)
                truths.append(t)
    return recs, truths


def calibrate(results: dict) -> dict:
    """(k, f) per kind: slip, twist (read away from the aligned stackings), twist_aligned (read
    within ``aligned_twist_warning_deg`` of one; its own k, the twist's floor). For each floor f the smallest k whose intervals
    cover ⌈(n + 1)·95 %⌉ of the n truths (:func:`required_covered`), keeping the pair with the
    narrowest mean interval. Readings in a wrong basin (errors above GROSS: another stacking won,
    which no local interval can cover) are left out of the fit and counted apart: they are what the
    runner-up, margin and warnings are for."""
    out = {}
    for kind in ("slip", "twist", "twist_aligned"):
        if kind == "slip":
            floors = np.arange(0.0, 0.041, 0.0025)
        elif kind == "twist" or "floor" not in out.get("twist", {}):
            floors = np.arange(0.0, 0.21, 0.01)
        else:  # one floor for both twist kinds (interval_floor_deg): the aligned one takes the twist's
            floors = [out["twist"]["floor"]]
        recs, truths = _kind_records(results, kind)
        if not recs:
            continue
        errs = np.array([metrics.slip_error(r, t) if kind == "slip" else metrics.twist_error(r, t)
                         for r, t in zip(recs, truths)])
        ok = errs < GROSS[kind]
        recs = [r for r, o in zip(recs, ok) if o]
        truths = [t for t, o in zip(truths, ok) if o]
        need = required_covered(len(recs))
        key = "uncertainty_A" if kind == "slip" else "uncertainty_deg"
        best = None
        for f in floors:
            for k in np.exp(np.linspace(np.log(0.3), np.log(30.0), 80)):
                width = np.array([r[key] for r in rescored(recs, truths, {kind: {"scale": k, "floor": f}})])
                if np.sum(errs[ok] <= width) >= need:
                    if best is None or width.mean() < best["mean_interval"]:
                        best = {"scale": float(k), "floor": float(f), "mean_interval": float(width.mean()),
                                "coverage": float(np.mean(errs[ok] <= width))}
                    break
        out[kind] = {**(best or {}), "n": int(len(ok)), "required_covered": need,
                     "gross_failures": int((~ok).sum())}
    return out


def shared_images(models: Path | None, settings: ClosedLoopSettings,
                  infer: InferenceSettings = InferenceSettings()) -> list[dict]:
    from vdwstack.structures.pixel_size import read_calibrated_image

    rows = []
    for f in sorted(SHARED.glob("*.png")):
        material = f.name.split("_")[0]
        material, layers, task = SHARED_TASKS.get(f.name, (material, 2, "slip"))
        try:
            image, px = read_calibrated_image(f, material, None, "user")
            rec = read_one(image, px.pixel_size_A, material, layers, task, models, settings, infer)
            rec.update(file=f.name, pixel_size_A=px.pixel_size_A, pixel_size_source=px.source)
        except ValueError as e:
            rec = {"file": f.name, "status": "error", "error": str(e)}
        print(json.dumps({k: v for k, v in rec.items() if k not in ("covariance", "candidates", "crop")}), flush=True)
        rows.append(rec)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="test", choices=("test", "calibration", "validation"))
    ap.add_argument("--tasks", nargs="+",
                    default=["ReS2_slip", "MoS2_slip", "MoS2_twist", "MoS2_twist_AAprime", "ReS2_trilayer"])
    ap.add_argument("--limit", type=int, default=None, help="first N images per task")
    ap.add_argument("--models", type=Path, default=ROOT / "results" / "models")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--calibration-json", type=Path, default=None,
                    help="re-score coverage with the (k, f) of this calibration JSON")
    ap.add_argument("--shared", action="store_true")
    ap.add_argument("--network-only", action="store_true",
                    help="score the networks alone (no closed loop): writes network_<set>.json, "
                         "with each image's error, reading, hand and drawn optics")
    ap.add_argument("--config", type=Path, nargs="+", default=[],
                    help="workflow config file(s), merged in order: the networks read with their `infer` block "
                         "(e.g. config/config.yaml config/cpu_hour.yaml); default: the inference defaults")
    ap.add_argument("--out", type=Path, default=None,
                    help="the JSON file to write (default: benchmarks/results/final_readings_<set>.json, "
                         "or network_<set>.json with --network-only)")
    args = ap.parse_args()
    try:
        infer = merged_infer_settings(args.config)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    models = args.models if args.models.is_dir() else None
    if args.network_only:
        if models is None:
            raise SystemExit(f"--models {args.models}: no such folder")
        out = args.out or ROOT / "benchmarks" / "results" / f"network_{args.set}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        per_image: dict = {}
        res = {"set": args.set, "models": str(models), "infer": vars(infer),
               "network": network_errors(args.set, args.tasks, args.limit, models, per_image, infer),
               "per_image": per_image}
        out.write_text(json.dumps(res, indent=1))
        print(f"-> {out}")
        return
    settings = ClosedLoopSettings()
    out = args.out or ROOT / "benchmarks" / "results" / f"final_readings_{args.set}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = run_set(args.set, args.tasks, args.limit, models, settings, out.with_suffix(".partial.json"), infer)
    summary = {"set": args.set, "models": str(models) if models else None, "infer": vars(infer),
               "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
               "scores": {t: r["scores"] for t, r in results.items()},
               "seconds_per_reading": {t: r["seconds_per_reading"] for t, r in results.items()}}
    if args.calibrate:
        summary["calibration"] = calibrate(results)
        print("calibration:", json.dumps(summary["calibration"]), flush=True)
    cal_src = args.calibration_json
    if cal_src is not None:
        cal = json.loads(cal_src.read_text())["calibration"]
        summary["scores_calibrated"] = {task: metrics.score(rescored(r["records"], r["truths"], cal), r["truths"])
                                        for task, r in results.items()}
    if args.shared and SHARED.is_dir():
        summary["shared"] = shared_images(models, replace(settings), infer)
    summary["records"] = {t: r["records"] for t, r in results.items()}
    out.write_text(json.dumps(summary, indent=1, default=float))
    print(json.dumps(summary["scores"], indent=1, default=float))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
