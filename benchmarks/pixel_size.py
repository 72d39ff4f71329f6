"""Accuracy of the pixel-size estimate on simulated images of known scale (and the shared
experimental images when present). Writes benchmarks/pixel_size.json.

    .venv/bin/python benchmarks/pixel_size.py
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.core.images import read_image
from vdwstack.structures.pixel_size import estimate_pixel_size
from vdwstack.simulate.render import simulate_row
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "experimental"


def simulated(material: str, p: float, rotation_deg: float, fov_A: float, rng) -> np.ndarray:
    size = int(max(256, 2 * round(fov_A / 2 / p)))
    row = dict(sample_id="b", material=material, layers=2, Da_A=0.7, Db_A=0.3, Da2_A=0.0, Db2_A=0.0, theta_deg=0.0,
               rotation_deg=rotation_deg, origin_x_A=size * p / 2, origin_y_A=size * p / 2, pixel_size_A=p,
               height_px=size, width_px=size, seed=7, **MICROSCOPE_DEFAULTS)
    img = simulate_row(row)
    return degrade(img - img.min() + 1e-3, p, Degradation(dose_e_per_A2=2e5, gaussian_noise=0.1), rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fov", type=float, default=30.0, help="field of view of the simulated images (Å)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pixel_size.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for mat in ("ReS2", "ReSe2", "MoS2", "WS2"):
        for p in (0.04, 0.07, 0.1, 0.15, 0.2):
            for rot in (0.0, 17.0, 41.0):
                img = simulated(mat, p, rot, args.fov, rng)
                t = time.perf_counter()
                est = estimate_pixel_size(img, mat)
                rows.append({"material": mat, "true_A": p, "rotation_deg": rot, "estimate_A": est.pixel_size_A,
                             "error_pct": 100 * (est.pixel_size_A / p - 1), "score": est.score,
                             "seconds": time.perf_counter() - t})
                print(f"{mat} {p:.2f} Å/px rot {rot:4.0f}°: {est.pixel_size_A:.4f} ({rows[-1]['error_pct']:+.2f} %)", flush=True)
    err = np.abs([r["error_pct"] for r in rows])
    result = {"fov_A": args.fov, "n": len(rows), "max_abs_error_pct": float(err.max()),
              "within_2pct": float(np.mean(err <= 2)), "simulated": rows, "experimental": []}
    if SHARED.is_dir():
        for f in sorted(SHARED.glob("*.png")):
            img, _ = read_image(f)
            try:
                est = estimate_pixel_size(img, f.name.split("_")[0])
                result["experimental"].append({"file": f.name, "estimate_A": est.pixel_size_A, "score": est.score})
            except ValueError as e:
                result["experimental"].append({"file": f.name, "error": str(e)})
    args.out.write_text(json.dumps(result, indent=1))
    print(f"max |error| {err.max():.2f} %, {100 * result['within_2pct']:.0f} % within 2 % -> {args.out}")


if __name__ == "__main__":
    main()
