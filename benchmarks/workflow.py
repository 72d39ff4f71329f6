"""End-to-end workflow timing: the demo from scratch, then the rerun after one new image arrives.

Run:  .venv/bin/python benchmarks/workflow.py [--cores 2] [--config-dir config] [--out benchmarks/workflow.json]

Copies the config folder into a fresh working directory, runs `snakemake --cores N` there (wall
time; peak memory as the largest sum of resident memory over Snakemake and all its job processes,
sampled every 0.2 s), then appends one row to the image sheet (a copy of the first image under a
new id) and times the rerun, which must run only that image's `infer` and `closed_loop` jobs and
the report.
Targets on 2 CPU cores: demo ≤ 10 min, one-new-image rerun ≤ 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
TARGETS_S = {"demo": 10 * 60, "one_new_image": 60}


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_snakemake(work: Path, cores: int, log: Path) -> dict:
    """Run the workflow in `work`; wall time, peak tree memory and the jobs it ran."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
           "--cores", str(cores)]
    peak = [0]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)

        def sample():
            while proc.poll() is None:
                try:
                    peak[0] = max(peak[0], _tree_rss(ps))
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        sampler.join()
    wall = time.perf_counter() - t0
    text = log.read_text()
    if rc != 0:
        raise SystemExit(f"snakemake failed (exit {rc}); log: {log}\n{text[-3000:]}")
    jobs = re.findall(r"^(?:local)?rule (\w+):", text, re.M)
    return {"wall_s": round(wall, 1), "peak_memory_MB": round(peak[0] / 2**20),
            "jobs": {j: jobs.count(j) for j in sorted(set(jobs))}, "log": str(log)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config-dir", type=Path, default=ROOT / "config",
                    help="folder with config.yaml and its sheets (default: the demo)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "workflow.json")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="vdwstack-bench-"))
    if (work / "results").exists():
        raise SystemExit(f"{work} already has results/; give an empty --workdir")
    shutil.copytree(args.config_dir, work / "config", dirs_exist_ok=True)
    logs = args.out.parent / (args.out.stem + "_logs")
    logs.mkdir(parents=True, exist_ok=True)
    try:
        demo = run_snakemake(work, args.cores, logs / "demo.log")
        print(f"demo: {demo['wall_s']} s, peak {demo['peak_memory_MB']} MB", flush=True)
        sheet_path = work / "config" / "images.tsv"
        sheet = pd.read_csv(sheet_path, sep="\t", dtype=str, comment="#").fillna("")
        row = sheet.iloc[0].copy()
        row["image_id"] = "benchmark_new_image"
        new_path = work / "benchmark_new_image.tif"
        shutil.copy(work / row["path"], new_path)  # a new file, as when an image arrives
        row["path"] = str(new_path.relative_to(work))
        pd.concat([sheet, row.to_frame().T]).to_csv(sheet_path, sep="\t", index=False)
        rerun = run_snakemake(work, args.cores, logs / "one_new_image.log")
        print(f"one new image: {rerun['wall_s']} s, jobs {rerun['jobs']}", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    out = {"config_dir": str(args.config_dir), "cores": args.cores, "cpu_count": os.cpu_count(),
           "demo": demo, "one_new_image": rerun, "targets_s": TARGETS_S,
           "meets_targets": {"demo": demo["wall_s"] <= TARGETS_S["demo"],
                             "one_new_image": rerun["wall_s"] <= TARGETS_S["one_new_image"]}}
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
