"""Sweep of the Bragg-spot pixel-size estimate (vdwstack.structures.pixel_size.estimate_pixel_size)
on simulated bilayers of known scale: materials × image sizes × pixel sizes × rotations × image
conditions (clean, noisy, low dose with scan jitter and contamination). Each case gives an estimate
or a refusal; an estimate more than 1 % off is a failure (the estimator must refuse instead).
The shared experimental images (../shared/data/experimental/*.png, material from the file name,
no calibration) are reported too, when present. Writes benchmarks/results/pixel_size.json.

    nice -n 10 .venv/bin/python benchmarks/pixel_size.py [--quick] [--out PATH]
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from vdwstack.core.images import read_image
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.pixel_size import estimate_pixel_size

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "experimental"
TOLERANCE = 0.01  # an accepted estimate must be within 1 % of the truth
FIELD_BINS = ((0, 10), (10, 15), (15, 20), (20, 25), (25, 30), (30, 60), (60, 1000))  # field of view (Å)

CONDITIONS = {
    "clean": None,
    "noisy": Degradation(dose_e_per_A2=2e5, gaussian_noise=0.1),
    "low_dose": Degradation(dose_e_per_A2=2e4, gaussian_noise=0.3, scanline_jitter_px=0.3, contamination_blobs=2.0),
}
FULL = {"materials": ("ReS2", "ReSe2", "MoS2", "WS2", "MoSe2", "WSe2"), "sizes": (128, 256, 384, 512),
        "pixel_sizes": (0.03, 0.05, 0.07, 0.09, 0.12, 0.16, 0.2), "rotations": (0.0, 17.0, 30.0, 41.0),
        "twists": (0.0,), "conditions": tuple(CONDITIONS)}
# 1024 px images are slower to simulate: fewer pixel sizes and one rotation.
FULL_1024 = {**FULL, "sizes": (1024,), "pixel_sizes": (0.03, 0.1, 0.2), "rotations": (17.0,)}
# Twisted bilayers: two lattices of the same scale, each half of the spots.
TWISTED = {**FULL, "sizes": (256, 512), "pixel_sizes": (0.05, 0.1), "rotations": (17.0,), "twists": (4.0, 21.8),
           "conditions": ("clean", "noisy")}
QUICK = {"materials": ("ReS2", "ReSe2", "MoS2", "MoSe2"), "sizes": (128, 384), "pixel_sizes": (0.05, 0.1),
         "rotations": (0.0, 17.0), "twists": (0.0,), "conditions": ("clean", "noisy")}


def simulated(material: str, size: int, p: float, rotation_deg: float, twist_deg: float, condition: str,
              rng: np.random.Generator) -> np.ndarray:
    """A bilayer of `material` (random slip, twisted by `twist_deg`), size × size px at p Å/px,
    rotated by `rotation_deg`, in one of the CONDITIONS."""
    row = dict(sample_id="b", material=material, layers=2, Da_A=float(rng.uniform(0, 3)),
               Db_A=float(rng.uniform(0, 3)), Da2_A=0.0, Db2_A=0.0, theta_deg=twist_deg, rotation_deg=rotation_deg,
               origin_x_A=size * p / 2, origin_y_A=size * p / 2, pixel_size_A=p, height_px=size, width_px=size,
               seed=int(rng.integers(1 << 30)), **MICROSCOPE_DEFAULTS)
    img = simulate_row(row)
    if CONDITIONS[condition] is None:
        return img
    return degrade(img - img.min() + 1e-3, p, CONDITIONS[condition], rng)


def cases(grids: list[dict]) -> list[tuple]:
    """(material, size, pixel size, rotation, twist, condition, seed) of every image of the grids;
    each image has its own seed (its index), so any one of them can be simulated again alone."""
    keys = ("materials", "sizes", "pixel_sizes", "rotations", "twists", "conditions")
    out = [c for grid in grids for c in itertools.product(*(grid[k] for k in keys))]
    return [(*c, i) for i, c in enumerate(out)]


def run_case(material: str, size: int, p: float, rot: float, twist: float, condition: str, seed: int) -> dict:
    """Simulate one image and estimate its pixel size: the outcome ("within_1pct", "refused" with
    the reason, or "wrong"), the estimate and its error (%)."""
    img = simulated(material, size, p, rot, twist, condition, np.random.default_rng([20240, seed]))
    t = time.perf_counter()
    rec = {"material": material, "size_px": size, "true_A": p, "field_A": size * p, "rotation_deg": rot,
           "twist_deg": twist, "condition": condition, "seed": seed}
    try:
        est = estimate_pixel_size(img, material)
    except ValueError as e:
        rec.update(outcome="refused", reason=str(e))
    else:
        err = est.pixel_size_A / p - 1
        rec.update(outcome="within_1pct" if abs(err) <= TOLERANCE else "wrong", estimate_A=est.pixel_size_A,
                   error_pct=100 * err, score=est.score, n_spots=est.n_spots)
    rec["seconds"] = time.perf_counter() - t
    return rec


def summarise(rows: list[dict]) -> dict:
    """Fractions within 1 % and refused, the number off by more than 1 %, the largest accepted error."""
    n = len(rows)
    acc = [abs(r["error_pct"]) for r in rows if r["outcome"] != "refused"]
    return {"n": n, "within_1pct": sum(r["outcome"] == "within_1pct" for r in rows) / max(n, 1),
            "refused": sum(r["outcome"] == "refused" for r in rows) / max(n, 1),
            "off_by_more_than_1pct": sum(r["outcome"] == "wrong" for r in rows),
            "max_abs_error_pct_accepted": max(acc) if acc else None}


def experimental() -> list[dict]:
    """Estimate or refusal for each shared experimental image (no ground truth)."""
    out = []
    for f in sorted(SHARED.glob("*.png")) if SHARED.is_dir() else []:
        img, _ = read_image(f)
        try:
            est = estimate_pixel_size(img, f.name.split("_")[0])
            out.append({"file": f.name, "estimate_A": est.pixel_size_A, "rotation_deg": est.rotation_deg,
                        "score": est.score, "n_spots": est.n_spots})
        except ValueError as e:
            out.append({"file": f.name, "refused": str(e)})
        print(f"{f.name}: {out[-1].get('estimate_A', out[-1].get('refused'))}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small subset (a few dozen images)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pixel_size.json")
    args = ap.parse_args()
    grids = [QUICK] if args.quick else [FULL, FULL_1024, TWISTED]
    rows = []
    t0 = time.perf_counter()
    for case in cases(grids):
        r = run_case(*case)
        rows.append(r)
        what = f"{r['estimate_A']:.4f} ({r['error_pct']:+.2f} %)" if "estimate_A" in r else f"refused: {r['reason'][:90]}"
        print(f"{case[0]:5s} {case[1]:4d} px {case[2]:.2f} Å/px rot {case[3]:2.0f}° twist {case[4]:4.1f}° {case[5]:8s} "
              f"{r['outcome']:11s} {what}", flush=True)
    result = {"summary": summarise(rows),
              "by_material": {m: summarise([r for r in rows if r["material"] == m])
                              for m in dict.fromkeys(r["material"] for r in rows)},
              "by_condition": {c: summarise([r for r in rows if r["condition"] == c])
                               for c in dict.fromkeys(r["condition"] for r in rows)},
              "by_size": {str(s): summarise([r for r in rows if r["size_px"] == s])
                          for s in dict.fromkeys(r["size_px"] for r in rows)},
              "by_field_A": {f"{lo}-{hi}": summarise([r for r in rows if lo <= r["field_A"] < hi])
                             for lo, hi in FIELD_BINS},
              "twisted": summarise([r for r in rows if r["twist_deg"] != 0]),
              "wrong": [r for r in rows if r["outcome"] == "wrong"],
              "seconds": time.perf_counter() - t0, "simulated": rows, "experimental": experimental()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    s = result["summary"]
    print(f"{s['n']} images: {100 * s['within_1pct']:.1f} % within 1 %, {100 * s['refused']:.1f} % refused, "
          f"{s['off_by_more_than_1pct']} off by > 1 % (max accepted error {s['max_abs_error_pct_accepted']:.3f} %)"
          f" -> {args.out}")
    for group in ("by_material", "by_condition", "by_field_A"):
        for k, v in result[group].items():
            if v["n"]:
                print(f"  {group[3:]} {k:8s}: {v['n']:4d} images, {100 * v['within_1pct']:3.0f} % within 1 %, "
                      f"{100 * v['refused']:3.0f} % refused, {v['off_by_more_than_1pct']} wrong")


if __name__ == "__main__":
    main()
