"""All benchmarks in one command; each writes its own JSON, and a summary of the headline numbers.

Run:  .venv/bin/python benchmarks/run_all.py [--quick] [--skip-workflow] [--out-dir benchmarks/results]
(`make bench`). On a GPU machine the throughput benchmarks add a CUDA row next to the CPU one.
--quick: smaller sizes, no ResNet-50, and the end-to-end timing on the tiny test config (.test/).
The full run takes about 35 min on 2 CPU cores, most of it the end-to-end demo and the closed-loop
study (20 simulated images, the nine shared experimental ones when present).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path, *args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--out", str(out), *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-workflow", action="store_true", help="throughput only (no end-to-end run)")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    sizes = ["--sizes", "256", "512"] if args.quick else []
    sim = _run("simulation.py", out / "simulation.json", "--threads", str(args.cores), *sizes,
               *(["--no-multislice"] if args.quick else []))
    drit = _run("drit.py", out / "drit.json")
    reg = _run("regress.py", out / "regress.json", *(["--architectures", "resnet18"] if args.quick else []))
    summary: dict = {
        "host": platform.node(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "simulation_Mpix_per_s": {f"{r['size_px']}px": round(r["megapixels_per_s"], 2)
                                  for r in sim["incoherent"] if not r["vary_defocus"]},
        "multislice_s_per_probe_position": sim.get("multislice", {}).get("seconds_per_probe_position"),
        "drit": {r["device"]: {"training_iterations_per_s": round(r["training_iterations_per_s"], 3),
                               "translation_images_per_s": round(r["translation_images_per_s"], 2)}
                 for r in drit["results"]},
        "regressor": {f"{r['device']}/{r['architecture']}/{r['input_px']}px/{r['precision']}"
                      f"{'/channels-last' if r['channels_last'] else ''}": {
            "train_images_per_s": round(r["train_images_per_s"], 2),
            "inference_tiles_per_s": round(r["inference_tiles_per_s"], 2)} for r in reg["results"] if r["kind"] == "model"},
        "regressor_training_loop_steps_per_s": {
            f"{r['input_px']}px/{r['precision']}{'/prefetch' if r['prefetch'] else ''}": round(r["train_steps_per_s"], 2)
            for r in reg["results"] if r["kind"] == "loop"},
    }
    fr = _run("final_readings.py", out / "final_readings_test.json", "--set", "test",
              *(["--limit", "4"] if args.quick else []))
    summary["final_readings"] = {"scores": fr["scores"], "seconds_per_reading": fr["seconds_per_reading"]}
    if not args.skip_workflow:
        config_dir = ROOT / ".test" / "config" if args.quick else ROOT / "config"
        wf = _run("workflow.py", out / "workflow.json", "--cores", str(args.cores), "--config-dir", str(config_dir))
        summary["end_to_end"] = {"config_dir": str(config_dir.relative_to(ROOT)),
                                 "demo_wall_s": wf["demo"]["wall_s"],
                                 "demo_peak_memory_MB": wf["demo"]["peak_memory_MB"],
                                 "one_new_image_rerun_wall_s": wf["one_new_image"]["wall_s"],
                                 "one_new_image_jobs": wf["one_new_image"]["jobs"],
                                 "meets_targets": wf["meets_targets"]}
    summary["benchmark_wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
