"""Domain maps on simulated two- and three-domain images with known boundaries.

Run:  .venv/bin/python benchmarks/domains.py --model results/models/slip/ReS2_slip [--n 4] [--out benchmarks/domains.json]

Each image is one ReS2 bilayer whose second layer's slip changes across straight boundaries
(stripes at a random angle): layer-2 atoms are displaced continuously, D(r) going from one
domain's slip to the next along the shortest path over a tanh profile of the given width, so a
boundary is a real slip gradient, not a blend of two images. Rendered by the incoherent simulator,
with shot noise. The map is read with the shipped infer settings and the given slip model; scored:

- domains found vs true (spurious = extra domains, missed = fewer);
- for each true boundary, the distance (Å) from the fitted boundary line to the true one, measured
  along the true normal at the middle of the boundary inside the field, and whether the true
  position lies within the fit's 95 % interval (1.96 σ);
- the fitted width vs the true one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vdwstack.core.microscope import Optics
from vdwstack.infer.reading import infer_image
from vdwstack.infer.settings import InferenceSettings
from vdwstack.regress.model import Regressor
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.simulate.incoherent import job_from_atoms, render_incoherent
from vdwstack.structures.geometry import StackGeometry, build_stack
from vdwstack.structures.symmetry import symmetry_for

MATERIAL = "ReS2"


def striped_image(slips: list[tuple[float, float]], normal_deg: float, edges_A: list[float], width_A: float,
                  size_A: float, pixel_size_A: float, rotation_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Image [H, W] of a bilayer whose slip is slips[k] between edges_A[k−1] and edges_A[k] along the
    normal (degrees from +x), with tanh transitions of `width_A` (the 10–90 % width is ~1.1 × width)."""
    sym = symmetry_for(MATERIAL)
    n_px = int(round(size_A / pixel_size_A))
    geom = StackGeometry(material=MATERIAL, layers=2, Da_A=slips[0][0], Db_A=slips[0][1], rotation_deg=rotation_deg,
                         origin_x_A=size_A / 2, origin_y_A=size_A / 2, seed=int(rng.integers(1 << 30)))
    atoms = build_stack(geom, (-4.0, n_px * pixel_size_A + 4.0, -4.0, n_px * pixel_size_A + 4.0))
    rot = np.deg2rad(rotation_deg)
    F = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    # Cumulative slip changes (lattice frame, shortest path between neighbouring domains).
    cart = [sym.slip_to_cartesian(*s) for s in slips]
    steps = [sym.wigner_seitz(cart[k + 1] - cart[k]) for k in range(len(slips) - 1)]
    n = np.array([np.cos(np.deg2rad(normal_deg)), np.sin(np.deg2rad(normal_deg))])
    layer2 = atoms.get_tags() == 2
    s = atoms.positions[layer2, :2] @ n
    shift = np.zeros((int(layer2.sum()), 2))
    for edge, step in zip(edges_A, steps):
        frac = 0.5 * (1 + np.tanh((s - edge) / (width_A / 2)))
        shift += frac[:, None] * (F @ step)[None]
    atoms.positions[layer2, :2] += shift
    return noisy_image(atoms, MATERIAL, pixel_size_A, n_px, rng)


def noisy_image(atoms, material: str, pixel_size_A: float, n_px: int, rng: np.random.Generator) -> np.ndarray:
    """The map benchmarks' imaging (also benchmarks/small_twist.py): incoherent ADF at 35 Å
    defocus of an n_px × n_px field, shot noise at 10⁶ e/Å²."""
    img = render_incoherent([job_from_atoms(atoms, Optics(defocus_A=35.0), material)], pixel_size_A,
                            (n_px, n_px), workers=2)[0]
    return degrade(img, pixel_size_A, Degradation(dose_e_per_A2=1e6), rng)


def write_results(args: argparse.Namespace, summary: dict, rows: list[dict]) -> None:
    """`args.out` ← the model, the command's settings, the summary and every image's row; the
    summary printed (also benchmarks/small_twist.py)."""
    Path(args.out).write_text(json.dumps({"model": args.model, "settings": vars(args), "summary": summary,
                                          "images": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def score(record: dict, normal_deg: float, edges_A: list[float], size_A: float) -> list[dict]:
    """Per true boundary: the nearest fitted boundary's distance (Å) along the true normal at the
    middle of the true boundary's chord, and whether 1.96 σ covers it."""
    n = np.array([np.cos(np.deg2rad(normal_deg)), np.sin(np.deg2rad(normal_deg))])
    centre = np.array([size_A / 2, size_A / 2])
    out = []
    for edge in edges_A:
        mid = centre + (edge - centre @ n) * n  # the true line's point nearest the field's centre
        best = None
        for b in record.get("boundaries", []):
            m = np.array([np.cos(np.deg2rad(b["normal_deg"])), np.sin(np.deg2rad(b["normal_deg"]))])
            denom = m @ n
            if abs(denom) < 0.5:  # more than 60° off: not this boundary
                continue
            # where the fitted line m·r = offset crosses the true normal through `mid`
            dist = abs((b["offset_A"] - m @ mid) / denom)
            if best is None or dist < best[0]:
                best = (dist, b)
        if best is None:
            out.append({"found": False})
            continue
        dist, b = best
        out.append({"found": True, "error_A": float(dist), "position_sigma_A": b["position_sigma_A"],
                     "covered_95": bool(dist <= 1.96 * b["position_sigma_A"]), "width_A": b["width_A"],
                     "angle_error_deg": float(np.rad2deg(np.arccos(min(1.0, abs(np.cos(np.deg2rad(b["normal_deg"] - normal_deg)))))))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a ReS2 slip model folder (results/models/slip/…)")
    ap.add_argument("--n", type=int, default=4, help="images per case (two and three domains)")
    ap.add_argument("--size-A", type=float, default=120.0)
    ap.add_argument("--pixel-size", type=float, default=0.1, help="Å/px of the rendered images")
    ap.add_argument("--width-A", type=float, default=5.0, help="true boundary width (tanh scale, Å)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="benchmarks/domains.json")
    args = ap.parse_args()
    reg = Regressor(args.model)
    settings = InferenceSettings()
    sym = symmetry_for(MATERIAL)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n_dom in (2, 3):
        for i in range(args.n):
            slips = []
            while len(slips) < n_dom:  # neighbouring domains at least 1 Å apart
                s = tuple(float(v) for v in sym.canonical_slip(rng.uniform(-3, 3), rng.uniform(-3, 3)))
                if not slips or all(sym.slip_error_A(*s, *o) > 1.0 for o in slips):
                    slips.append(s)
            normal = float(rng.uniform(0, 180))
            centre = args.size_A / 2 * (np.cos(np.deg2rad(normal)) + np.sin(np.deg2rad(normal)))
            gap = args.size_A / 3.2
            edges = [centre + rng.uniform(-8, 8)] if n_dom == 2 else [centre - gap / 2, centre + gap / 2]
            t0 = time.perf_counter()
            img = striped_image(slips, normal, edges, args.width_A, args.size_A, args.pixel_size, float(rng.uniform(0, 360)), rng)
            rec = infer_image(img, args.pixel_size, reg, settings, image_id=f"domains{n_dom}_{i}").record
            scored = score(rec, normal, edges, args.size_A)
            row = {"true_domains": n_dom, "found_domains": rec["n_domains"], "spurious": max(0, rec["n_domains"] - n_dom),
                   "missed": max(0, n_dom - rec["n_domains"]), "slips": slips, "normal_deg": normal, "edges_A": edges,
                   "boundaries": scored, "domain_readings": [{k: d[k] for k in ("Da_A", "Db_A", "area_nm2")} for d in rec["domains"]],
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            errs = [b.get("error_A") for b in scored]
            print(f"{n_dom} domains #{i}: found {rec['n_domains']}, boundary errors {errs} Å", flush=True)
    found = [b for r in rows for b in r["boundaries"] if b["found"]]
    summary = {"images": len(rows), "exact_domain_count": sum(r["found_domains"] == r["true_domains"] for r in rows),
               "spurious_domains": sum(r["spurious"] for r in rows), "missed_domains": sum(r["missed"] for r in rows),
               "boundaries_true": sum(len(r["boundaries"]) for r in rows), "boundaries_found": len(found),
               "boundary_error_mean_A": float(np.mean([b["error_A"] for b in found])) if found else None,
               "boundary_error_max_A": float(np.max([b["error_A"] for b in found])) if found else None,
               "within_1nm": sum(b["error_A"] <= 10.0 for b in found),
               "covered_95": sum(b["covered_95"] for b in found)}
    write_results(args, summary, rows)


if __name__ == "__main__":
    main()
