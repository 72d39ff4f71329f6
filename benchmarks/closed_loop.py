"""Closed-loop check: how well it tells right readings from wrong ones and how far refinement helps.

1. Simulated images with known truth (incoherent simulator + vdwstack.simulate.degrade: dose, read noise,
   scan jitter, drift, contamination; vacancies; random rotation, translation, pixel size): mean ΔD
   before and after refining readings perturbed by 0.1–0.5 Å; agreement of the right reading vs one
   shifted by half a cell (a/2; another half-cell shift where D + a/2 is within 0.5 Å of an
   equivalent of D, as it can be for hexagonal MX2), and whether the global search (slip grid, then
   local fit) run on the wrong reading finds the truth (its ΔD to the truth).
2. The real images of ../shared/data/experimental (when present), pixel size from their Bragg spots:
   no trained model is needed — the reading is the best point of a coarse grid over the slip cell
   scored by the agreement itself (two slips for the trilayer), then refined; the worst grid point
   shows the contrast. The twisted MoS2 reading is the classical FFT twist, θ and 60° − θ both
   checked (Fourier methods cannot tell them apart; a real-space model can), each with the global
   twist scan's best alternative (vdwstack.closed_loop.check.search_alternative).

    .venv/bin/python benchmarks/closed_loop.py [--n 20] [--quick] [--skip-experimental]

Writes benchmarks/results/closed_loop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vdwstack.closed_loop import (  # noqa: E402
    ClosedLoopSettings, Comparator, Stacking, check_reading, extract_crop, initial_poses, scan_slip,
)
from vdwstack.simulate.degrade import Degradation, degrade  # noqa: E402
from vdwstack.structures.materials import get_material  # noqa: E402
from vdwstack.simulate.render import simulate_row  # noqa: E402
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS  # noqa: E402
from vdwstack.structures.symmetry import symmetry_for  # noqa: E402


def grid_search_slip(image: np.ndarray, pixel_size_A: float, material: str, layers: int,
                     settings: ClosedLoopSettings = ClosedLoopSettings(), step_A: float = 0.5,
                     centre_A: tuple[float, float] | None = None) -> dict:
    """A network-free reading: the canonical slip (two for trilayers) of a grid over the slip cell
    that agrees best with the image, pose from the Bragg spots, default optics. Bilayers use
    :func:`scan_slip` (the alternative search's grid; each grid point in its best pose, agreement
    at whole-pixel translations), trilayers every pair of slips in every pose.

    Returns {"best": {Da_A, Db_A[, Da2_A, Db2_A], agreement}, "worst": {...}, "n_points": int}.
    """
    sym = symmetry_for(material)
    crop = extract_crop(image, pixel_size_A, centre_A, settings)
    comp = Comparator(crop, material, layers, settings)
    keys = ["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if layers == 3 else [])

    def entry(s: Stacking, a: float) -> dict:
        return {**{k: round(getattr(s, k), 4) for k in keys}, "agreement": round(float(a), 4)}

    if layers == 2:
        scan = scan_slip(comp, initial_poses(comp, image, pixel_size_A, Stacking()), step_A)
        return {"best": entry(scan[0].stacking, scan[0].agreement), "worst": entry(scan[-1].stacking, scan[-1].agreement),
                "n_points": len(scan), "rotation_deg": scan[0].pose.rotation_deg, "simulations": comp.evaluations}
    # Trilayers: the second slip over the whole cell (only the pair is defined up to ±), first canonical.
    da, db = sym.slip_grid(step_A)
    k = max(2, int(np.ceil(max(get_material(material).a_A, get_material(material).b_A) / step_A)))
    frac = np.stack(np.meshgrid(np.arange(k) / k, np.arange(k) / k, indexing="ij"), -1).reshape(-1, 2)
    d2a, d2b = sym.cartesian_to_slip(sym.wigner_seitz(frac @ sym.lattice))
    grid = [Stacking(Da_A=float(a), Db_A=float(b), Da2_A=float(a2), Db2_A=float(b2))
            for a, b in zip(da, db) for a2, b2 in zip(d2a, d2b)]
    starts = initial_poses(comp, image, pixel_size_A, grid[0])
    scores = np.full((len(starts), len(grid)), -np.inf)
    for i, pose in enumerate(starts):
        for j, s in enumerate(grid):
            scores[i, j] = comp.evaluate(s, pose).agreement
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    best_pose_scores = scores[i]
    jw = int(np.argmin(best_pose_scores))
    return {"best": entry(grid[j], scores[i, j]), "worst": entry(grid[jw], best_pose_scores[jw]),
            "n_points": len(grid), "rotation_deg": starts[i].rotation_deg, "simulations": comp.evaluations}


EXPERIMENTAL = ROOT.parent / "shared" / "data" / "experimental"
# (file, material, layers, task)
REAL_IMAGES = [
    ("ReS2_bilayer_1.png", "ReS2", 2, "slip"),
    ("ReS2_bilayer_2.png", "ReS2", 2, "slip"),
    ("ReS2_bilayer_3.png", "ReS2", 2, "slip"),
    ("ReS2_bilayer_4.png", "ReS2", 2, "slip"),
    ("ReS2_bilayer_large_area.png", "ReS2", 2, "slip"),
    ("ReS2_bilayer_style_reference.png", "ReS2", 2, "slip"),
    ("ReSe2_bilayer.png", "ReSe2", 2, "slip"),
    ("ReS2_trilayer.png", "ReS2", 3, "slip"),
    ("MoS2_twisted_bilayer.png", "MoS2", 2, "twist"),
]


def half_cell_wrong(material: str, truth: dict, min_dD_A: float = 0.5) -> dict:
    """The wrong reading D + a/2; when that lies within `min_dD_A` of a symmetry-equivalent of D
    (it can for hexagonal MX2, whose group on D is C6), the half-cell shift (a/2, b/2 or (a+b)/2)
    farthest from every equivalent of D instead."""
    sym = symmetry_for(material)
    m = get_material(material)
    shifts = [(m.a_A / 2, 0.0), (0.0, m.b_A / 2), (m.a_A / 2, m.b_A / 2)]
    cands = [{"Da_A": truth["Da_A"] + sa, "Db_A": truth["Db_A"] + sb} for sa, sb in shifts]
    dD = [float(sym.slip_error_A(c["Da_A"], c["Db_A"], truth["Da_A"], truth["Db_A"])) for c in cands]
    return cands[0] if dD[0] >= min_dD_A else cands[int(np.argmax(dD))]


def simulated_study(n: int, settings: ClosedLoopSettings, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        material = ["ReS2", "ReS2", "MoS2", "ReSe2"][i % 4]
        sym = symmetry_for(material)
        lat = sym.lattice
        da, db = sym.canonical_slip(*sym.cartesian_to_slip(rng.random(2) @ lat))
        p = float(rng.uniform(0.04, 0.08))
        size = int(np.ceil(settings.crop_A * 1.25 / p))
        row = {"material": material, "layers": 2, "Da_A": float(da), "Db_A": float(db), "theta_deg": 0.0,
               "rotation_deg": float(rng.uniform(0, 360)), "origin_x_A": float(rng.uniform(0, 10)),
               "origin_y_A": float(rng.uniform(0, 10)), "vacancy_fraction": 0.02, **MICROSCOPE_DEFAULTS,
               "defocus_A": float(rng.uniform(25, 50)), "source_fwhm_A": float(rng.uniform(0.5, 0.9)),
               "pixel_size_A": p, "height_px": size, "width_px": size, "seed": int(rng.integers(1 << 30))}
        deg = Degradation(dose_e_per_A2=float(rng.uniform(3e4, 2e5)), gaussian_noise=0.1, scanline_jitter_px=0.5,
                          drift_px=(float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))),
                          contamination_blobs=1.0, contamination_radius_A=3.0, contamination_strength=0.3)
        img = degrade(simulate_row(row), p, deg, rng)
        truth = {"Da_A": row["Da_A"], "Db_A": row["Db_A"]}
        no_refine = replace(settings, refine=False, search_alternatives="never")
        t0 = time.perf_counter()
        right = check_reading(img, p, material, 2, truth, "slip", no_refine).reading.agreement
        wrong_reading = half_cell_wrong(material, truth)
        wrong_dD = float(sym.slip_error_A(wrong_reading["Da_A"], wrong_reading["Db_A"], truth["Da_A"], truth["Db_A"]))
        t_alt = time.perf_counter()
        wrong_res = check_reading(img, p, material, 2, wrong_reading, "slip",
                                  replace(no_refine, search_alternatives="always"))
        t_alt = time.perf_counter() - t_alt
        wrong = wrong_res.reading.agreement
        alt = wrong_res.alternative.stacking
        alt_dD = float(sym.slip_error_A(alt.Da_A, alt.Db_A, truth["Da_A"], truth["Db_A"]))
        # A reading 0.1–0.5 Å off in a random direction, then refined.
        err_A = float(rng.uniform(0.1, 0.5))
        ang = rng.uniform(0, 2 * np.pi)
        pda, pdb = sym.cartesian_to_slip(sym.slip_to_cartesian(truth["Da_A"], truth["Db_A"])
                                         + err_A * np.array([np.cos(ang), np.sin(ang)]))
        res = check_reading(img, p, material, 2, {"Da_A": float(pda), "Db_A": float(pdb)}, "slip",
                            replace(settings, search_alternatives="never"))
        before = float(sym.slip_error_A(pda, pdb, truth["Da_A"], truth["Db_A"]))
        after = float(sym.slip_error_A(res.refined.stacking.Da_A, res.refined.stacking.Db_A, truth["Da_A"],
                                       truth["Db_A"]))
        rows.append({"material": material, "pixel_size_A": p, "truth": truth, "agreement_right": right,
                     "half_cell_wrong_reading": wrong_reading, "half_cell_wrong_dD_A": wrong_dD,
                     "agreement_half_cell_wrong": wrong, "alternative_dD_A": alt_dD,
                     "alternative_agreement": wrong_res.alternative.agreement,
                     "alternative_fits_better": wrong_res.fits_better,
                     "seconds_check_with_search": t_alt, "perturbed_agreement": res.reading.agreement,
                     "refined_agreement": res.refined.agreement, "dD_before_A": before, "dD_after_A": after,
                     "seconds": time.perf_counter() - t0})
        print(f"[{i + 1}/{n}] {material} p={p:.3f}: r right {right:.3f} wrong {wrong:.3f}; "
              f"ΔD {before:.3f} → {after:.3f} Å; search from the wrong reading: ΔD {alt_dD:.3f} Å "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    arr = {k: np.array([r[k] for r in rows]) for k in ("agreement_right", "agreement_half_cell_wrong",
                                                        "dD_before_A", "dD_after_A", "seconds",
                                                        "alternative_dD_A", "alternative_fits_better",
                                                        "seconds_check_with_search")}
    return {
        "n_images": n,
        "mean_dD_before_A": float(arr["dD_before_A"].mean()),
        "mean_dD_after_A": float(arr["dD_after_A"].mean()),
        "median_dD_after_A": float(np.median(arr["dD_after_A"])),
        "fraction_improved": float(np.mean(arr["dD_after_A"] < arr["dD_before_A"])),
        "mean_agreement_right": float(arr["agreement_right"].mean()),
        "min_agreement_right": float(arr["agreement_right"].min()),
        "mean_agreement_half_cell_wrong": float(arr["agreement_half_cell_wrong"].mean()),
        "max_agreement_half_cell_wrong": float(arr["agreement_half_cell_wrong"].max()),
        "fraction_right_above_wrong": float(np.mean(arr["agreement_right"] > arr["agreement_half_cell_wrong"])),
        "min_margin_right_minus_wrong": float(np.min(arr["agreement_right"] - arr["agreement_half_cell_wrong"])),
        "fraction_margin_at_least_0.05": float(np.mean(arr["agreement_right"] - arr["agreement_half_cell_wrong"]
                                                       >= 0.05)),
        "alternative_mean_dD_A": float(arr["alternative_dD_A"].mean()),
        "alternative_fraction_within_0.1_A": float(np.mean(arr["alternative_dD_A"] < 0.1)),
        "alternative_fraction_fits_better": float(np.mean(arr["alternative_fits_better"])),
        "mean_seconds_check_with_search": float(arr["seconds_check_with_search"].mean()),
        "mean_seconds_per_image_3_checks": float(arr["seconds"].mean()),
        "images": rows,
    }


def experimental_study(settings: ClosedLoopSettings) -> dict:
    from vdwstack.core.images import read_image
    from vdwstack.structures.reciprocal import fft_twist_deg
    from vdwstack.structures.pixel_size import estimate_pixel_size

    out = {}
    for name, material, layers, task in REAL_IMAGES:
        path = EXPERIMENTAL / name
        t0 = time.perf_counter()
        try:
            image, _ = read_image(path)
            p = estimate_pixel_size(image, material).pixel_size_A
            entry = {"material": material, "layers": layers, "task": task, "pixel_size_A": p,
                     "shape_px": list(image.shape)}
            if task == "slip":
                grid = grid_search_slip(image, p, material, layers, settings, step_A=0.5 if layers == 2 else 1.5)
                reading = {k: v for k, v in grid["best"].items() if k != "agreement"}
                # The reading is already the grid's best: no second global search.
                res = check_reading(image, p, material, layers, reading, "slip",
                                    replace(settings, search_alternatives="never"))
                rec = res.to_record()
                entry.update(reading_source="best point of a grid over the slip cell (agreement)",
                             grid_step_A=0.5 if layers == 2 else 1.5, grid_points=grid["n_points"],
                             grid_best=grid["best"], grid_worst=grid["worst"], agreement=rec["agreement"],
                             refined=rec.get("refined"), refined_agreement=rec.get("refined_agreement"),
                             change_A=rec.get("change_A"), fit=rec["refined_fit"], warnings=rec["warnings"])
            else:
                theta = float(fft_twist_deg(image, p, material))
                checks = {}
                for th in (theta, 60.0 - theta):
                    rec = check_reading(image, p, material, layers, {"theta_deg": th}, "twist",
                                        replace(settings, search_alternatives="always")).to_record()
                    checks[f"{th:.2f}"] = {"agreement": rec["agreement"], "refined": rec.get("refined"),
                                           "refined_agreement": rec.get("refined_agreement"),
                                           "change_deg": rec.get("change_deg"), "fit": rec["refined_fit"],
                                           "alternative": {k: v for k, v in rec.get("alternative", {}).items()
                                                           if k != "fit"} or None,
                                           "warnings": rec["warnings"]}
                entry.update(reading_source="classical FFT twist (θ and 60° − θ)", fft_theta_deg=theta,
                             checks=checks)
            entry["status"] = "ok"
        except Exception as e:  # report and go on: one bad image must not hide the others
            entry = {"material": material, "status": "error", "error": f"{type(e).__name__}: {e}"}
        entry["seconds"] = time.perf_counter() - t0
        out[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k not in ("fit",)}, default=float), flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="simulated images")
    ap.add_argument("--quick", action="store_true", help="4 simulated images, no experimental part")
    ap.add_argument("--skip-experimental", action="store_true")
    ap.add_argument("--skip-simulated", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "closed_loop.json"))
    args = ap.parse_args(argv)
    settings = ClosedLoopSettings(crop_A=16.0, max_evaluations=50)
    result = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
              "cpu_cores": os.cpu_count()}
    if not args.skip_simulated:
        result["simulated"] = simulated_study(4 if args.quick else args.n, settings)
    if not (args.quick or args.skip_experimental):
        if EXPERIMENTAL.is_dir():
            result["experimental"] = experimental_study(replace(settings, crop_A=20.0))
        else:
            result["experimental"] = "skipped: ../shared/data/experimental not present"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    # Parts not rerun keep their previous numbers.
    out.write_text(json.dumps({**previous, **result}, indent=1, default=float))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
