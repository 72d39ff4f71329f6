"""Small twist angles read from slip maps, against the truth and the FFT baseline.

Run:  .venv/bin/python benchmarks/small_twist.py --model results/models/slip/ReS2_slip
          [--angles 0 0.25 0.5 1 1.5 2 3] [--n 2] [--size-A 150] [--out benchmarks/small_twist.json]

Each image is a bilayer of the model's material twisted by θ about a random point (rendered by the
incoherent simulator at 0.1 Å/px, a random in-plane rotation, the second layer's slip at the
rotation centre random, shot noise), read by ``infer_image`` with the shipped ``infer`` settings:
the slip map's ``twist_from_slip_map`` (:mod:`vdwstack.infer.slip_gradient`) is scored against θ:
absolute error, whether θ lies within its 95 % interval (1.96 σ; a lower bound counts when θ is
above it) and the FFT baseline (:func:`vdwstack.structures.reciprocal.fft_twist_deg`) on the same
image. The slip network was trained on untwisted bilayers only; it reads the local slip of each
window.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from domains import noisy_image, write_results  # noqa: E402  (the same imaging and output)

from vdwstack.infer.reading import infer_image  # noqa: E402
from vdwstack.infer.settings import InferenceSettings  # noqa: E402
from vdwstack.regress.model import Regressor  # noqa: E402
from vdwstack.structures.geometry import StackGeometry, build_stack  # noqa: E402
from vdwstack.structures.reciprocal import fft_twist_deg  # noqa: E402


def twisted_image(material: str, theta_deg: float, size_A: float, pixel_size_A: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Image [H, W] of a bilayer twisted by θ about a random point of the field, shot noise."""
    n_px = int(round(size_A / pixel_size_A))
    geom = StackGeometry(material=material, layers=2, Da_A=float(rng.uniform(-3, 3)), Db_A=float(rng.uniform(-3, 3)),
                         theta_deg=theta_deg, rotation_deg=float(rng.uniform(0, 360)),
                         origin_x_A=float(rng.uniform(0.2, 0.8) * size_A), origin_y_A=float(rng.uniform(0.2, 0.8) * size_A),
                         seed=int(rng.integers(1 << 30)))
    atoms = build_stack(geom, (-4.0, size_A + 4.0, -4.0, size_A + 4.0))
    return noisy_image(atoms, material, pixel_size_A, n_px, rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a bilayer slip model folder (results/models/slip/…)")
    ap.add_argument("--angles", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 1.5, 2, 3])
    ap.add_argument("--n", type=int, default=2, help="images per angle")
    ap.add_argument("--size-A", type=float, default=150.0)
    ap.add_argument("--pixel-size", type=float, default=0.1, help="Å/px of the rendered images")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/small_twist.json")
    args = ap.parse_args()
    reg = Regressor(args.model)
    material = reg.codec.material
    rng = np.random.default_rng(args.seed)
    rows = []
    for theta in args.angles:
        for i in range(args.n):
            t0 = time.perf_counter()
            img = twisted_image(material, theta, args.size_A, args.pixel_size, rng)
            rec = infer_image(img, args.pixel_size, reg, InferenceSettings(), image_id=f"twist{theta}_{i}").record
            r = rec["twist_from_slip_map"]
            fft = fft_twist_deg(img, args.pixel_size, material)
            err = abs(r["theta_deg"] - theta)
            covered = err <= 1.96 * r["sigma_deg"] or (r["lower_bound"] and theta >= r["theta_deg"])
            rows.append({"theta_deg": theta, "read_deg": r["theta_deg"], "sigma_deg": r["sigma_deg"],
                         "lower_bound": r["lower_bound"], "error_deg": err, "covered_95": bool(covered),
                         "noise_A": r["noise_A"], "anisotropy": r["anisotropy"], "lags_A": r["lags_A"],
                         "fft_deg": fft, "fft_error_deg": abs(fft - theta), "n_domains": rec["n_domains"],
                         "seconds": time.perf_counter() - t0})
            print(f"θ = {theta}°: read {r['theta_deg']:.3f} ± {r['sigma_deg']:.3f}° "
                  f"{'(lower bound) ' if r['lower_bound'] else ''}noise {r['noise_A']:.3f} Å, FFT {fft:.2f}°", flush=True)
    by_angle = {}
    for theta in args.angles:
        sel = [r for r in rows if r["theta_deg"] == theta]
        by_angle[str(theta)] = {"mean_error_deg": float(np.mean([r["error_deg"] for r in sel])),
                                "fft_mean_error_deg": float(np.mean([r["fft_error_deg"] for r in sel])),
                                "covered_95": sum(r["covered_95"] for r in sel), "n": len(sel),
                                "lower_bounds": sum(r["lower_bound"] for r in sel)}
    valid = [r for r in rows if not r["lower_bound"]]
    summary = {"material": material, "images": len(rows), "by_angle": by_angle,
               "mean_error_deg_valid": float(np.mean([r["error_deg"] for r in valid])) if valid else None,
               "fft_mean_error_deg": float(np.mean([r["fft_error_deg"] for r in rows])),
               "covered_95": sum(r["covered_95"] for r in rows)}
    write_results(args, summary, rows)


if __name__ == "__main__":
    main()
