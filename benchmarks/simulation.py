"""Simulation throughput: incoherent Mpix/s at several sizes and abTEM multislice s/probe position.

Run:  .venv/bin/python benchmarks/simulation.py [--threads 2] [--out benchmarks/simulation.json]
Prints a table and writes JSON. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from vdwstack.simulate.incoherent import job_from_atoms, padding_px, render_incoherent
from vdwstack.simulate.multislice import MultisliceSettings, simulate_abtem
from vdwstack.core.microscope import Optics
from vdwstack.structures.geometry import StackGeometry, build_stack, layer_heights_A


def bench_incoherent(size: int, pixel_size_A: float, threads: int, repeats: int, batch: int,
                     vary_defocus: bool = False) -> dict:
    optics = Optics()
    geom = StackGeometry("ReS2", 2, Da_A=1.1, Db_A=0.4, rotation_deg=13.0,
                         origin_x_A=size * pixel_size_A / 2, origin_y_A=size * pixel_size_A / 2)
    margin = (padding_px(optics, pixel_size_A, layer_heights_A(geom)) + 8) * pixel_size_A
    extent = size * pixel_size_A
    t0 = time.perf_counter()
    atoms = build_stack(geom, (-margin, extent + margin, -margin, extent + margin))
    t_atoms = time.perf_counter() - t0
    jobs = [job_from_atoms(atoms, optics, "ReS2", layer_heights_A(geom))] * batch
    render_incoherent(jobs[:1], pixel_size_A, (size, size), workers=threads)  # warm caches (probe, FFT plans)
    times = []
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        if vary_defocus:  # every image gets new optics, as in a dataset with a defocus range
            jobs = [job_from_atoms(atoms, optics.with_defocus(rng.uniform(30, 40)), "ReS2", layer_heights_A(geom))
                    for _ in range(batch)]
        t0 = time.perf_counter()
        render_incoherent(jobs, pixel_size_A, (size, size), workers=threads)
        times.append((time.perf_counter() - t0) / batch)
    best = min(times)
    fov_atoms = int(np.sum((atoms.positions[:, :2] >= 0).all(1) & (atoms.positions[:, :2] < extent).all(1)))
    return {"size_px": size, "pixel_size_A": pixel_size_A, "vary_defocus": vary_defocus, "atoms_in_fov": fov_atoms,
            "atoms_rendered": len(atoms), "seconds_per_image": best, "megapixels_per_s": size * size / best / 1e6,
            "build_atoms_s": t_atoms}


def bench_multislice(threads: int) -> dict:
    optics = Optics()
    geom = StackGeometry("MoS2", 2, Da_A=0.7, Db_A=0.3)
    a = 3.18
    lx, ly = 3 * a, 2 * np.sqrt(3) * a
    cell = build_stack(geom, (0, lx, 0, ly))
    cell.set_cell([lx, ly, 20.0])
    n, p = 8, 0.2
    settings = MultisliceSettings(potential_sampling_A=0.03, slice_thickness_A=1.0)
    t0 = time.perf_counter()
    simulate_abtem(cell, optics, p, (n, n), settings=settings, periodic=True)
    dt = time.perf_counter() - t0
    ext = int(np.ceil(4 * optics.source_sigma_A / p))
    positions = (n + 2 * ext) ** 2
    return {"structure": "MoS2 bilayer, 9.5 x 11.0 Å periodic cell", "potential_sampling_A": 0.03,
            "slice_thickness_A": 1.0, "probe_positions": positions, "seconds": dt,
            "seconds_per_probe_position": dt / positions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--pixel-size", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-multislice", action="store_true")
    ap.add_argument("--out", default="benchmarks/simulation.json")
    args = ap.parse_args()
    results = {"machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "platform": platform.platform()},
               "incoherent": []}
    for vary in (False, True):
        for size in args.sizes:
            batch = max(1, min(8, (512 // size) ** 2))
            r = bench_incoherent(size, args.pixel_size, args.threads, args.repeats, batch, vary)
            results["incoherent"].append(r)
            print(f"incoherent {size:5d}² {'new optics each image' if vary else 'fixed optics          '}: "
                  f"{r['seconds_per_image']*1e3:8.1f} ms/image  {r['megapixels_per_s']:6.2f} Mpix/s"
                  f"  ({r['atoms_in_fov']} atoms in view)")
    if not args.no_multislice:
        m = bench_multislice(args.threads)
        results["multislice"] = m
        print(f"multislice: {m['seconds_per_probe_position']*1e3:.1f} ms per probe position")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
