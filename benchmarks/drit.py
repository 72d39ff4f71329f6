"""DRIT throughput: training iterations/s (all three enhancements on) and translation images/s.

Run:  .venv/bin/python benchmarks/drit.py [--config config/config.yaml] [--out benchmarks/drit.json]
      .venv/bin/python benchmarks/drit.py --config config/paper.yaml --batch-size 2 --profile 2
        (where an iteration's time goes: the phases of DritTrainer.step and the top operators)
The architecture, batch and crop come from the config's `drit` block (and `synthesize.batch_size`
for translation at the dataset's image size); inputs are random, throughput does not depend on
content. CPU, and the GPU too when one is visible.

The C allocator matters on the CPU: glibc returns every block over its mmap threshold (≤ 32 MB) to
the kernel and faults it in again at the next iteration, so paper-scale activations cost millions of
page faults. DritTrainer therefore makes glibc keep freed memory (`vdwstack.core.allocator`);
compare with glibc's defaults or jemalloc:
      VDWSTACK_KEEP_FREED_MEMORY=0 .venv/bin/python benchmarks/drit.py ...
      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python benchmarks/drit.py ...
The JSON records which allocator ran (`allocator`: glibc-retain, libc, jemalloc, tcmalloc).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import yaml

from vdwstack.core.allocator import malloc_name
from vdwstack.drit.training import DritConfig, DritTrainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(cfg: DritConfig, pixel_size_A: float, image_px: int, translate_batch: int, device: torch.device,
          iterations: int, repeats: int) -> dict:
    trainer = DritTrainer(cfg, pixel_size_A, device)
    crop = cfg.crop_px
    a = torch.rand(cfg.batch_size, 1, crop, crop, device=device)
    b = torch.rand(cfg.batch_size, 1, crop, crop, device=device)
    trainer.step(a, b)  # warm-up (allocations, cuDNN autotune)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iterations):
        trainer.step(a, b)
    _sync(device)
    it_per_s = iterations / (time.perf_counter() - t0)

    model = trainer.model.eval()
    sims = torch.rand(translate_batch, 1, image_px, image_px, device=device)
    style = torch.rand(2, 1, crop, crop, device=device)
    model.translate(sims, style=style)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.translate(sims, style=style)
    _sync(device)
    img_per_s = repeats * translate_batch / (time.perf_counter() - t0)
    return {"device": device.type, "batch_size": cfg.batch_size, "crop_px": crop,
            "training_iterations_per_s": it_per_s, "translate_image_px": image_px,
            "translate_batch": translate_batch, "translation_images_per_s": img_per_s}


def profile(cfg: DritConfig, pixel_size_A: float, device: torch.device, iterations: int) -> dict:
    """Seconds per iteration in each phase of DritTrainer.step (profiler labels drit.*) and the
    operators that take most of the time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = DritTrainer(cfg, pixel_size_A, device)
    a = torch.rand(cfg.batch_size, 1, cfg.crop_px, cfg.crop_px, device=device)
    b = torch.rand(cfg.batch_size, 1, cfg.crop_px, cfg.crop_px, device=device)
    trainer.step(a, b)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        for _ in range(iterations):
            trainer.step(a, b)
    wall = (time.perf_counter() - t0) / iterations
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 / iterations for e in events if e.key.startswith("drit.")}
    top = sorted((e for e in events if not e.key.startswith("drit.")), key=lambda e: -e.self_cpu_time_total)[:15]
    ops = [{"op": e.key, "self_s_per_iteration": e.self_cpu_time_total / 1e6 / iterations, "calls": e.count // iterations}
           for e in top]
    for k, v in phases.items():
        print(f"{k:28s} {v:7.2f} s/iteration")
    for o in ops:
        print(f"  {o['op']:40s} {o['self_s_per_iteration']:7.2f} s  ({o['calls']} calls)")
    return {"seconds_per_iteration": wall, "phases_s": phases, "top_ops": ops,
            "parameters": sum(p.numel() for p in trainer.model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--iterations", type=int, default=10, help="timed training iterations")
    ap.add_argument("--repeats", type=int, default=3, help="timed translation batches")
    ap.add_argument("--out", default="benchmarks/drit.json")
    ap.add_argument("--batch-size", type=int, default=None, help="override drit.batch_size")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="profile N iterations instead")
    ap.add_argument("--mixed-precision", action="store_true", help="drit.mixed_precision: true (bf16 autocast)")
    ap.add_argument("--channels-last", action="store_true", help="drit.channels_last: true")
    args = ap.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    block = {k: v for k, v in config["drit"].items() if k not in ("dataset", "eval_images")}
    if args.batch_size:
        block["batch_size"] = args.batch_size
    block["mixed_precision"] = args.mixed_precision or block.get("mixed_precision", False)
    block["channels_last"] = args.channels_last or block.get("channels_last", False)
    cfg = DritConfig.from_mapping(block)
    if args.profile:
        result = profile(cfg, float(config["datasets"][config["drit"]["dataset"]]["pixel_size_A"]),
                         torch.device("cpu"), args.profile)
        result.update(config=args.config, batch_size=cfg.batch_size, crop_px=cfg.crop_px, torch_threads=torch.get_num_threads(),
                      allocator=malloc_name(), mixed_precision=cfg.mixed_precision, channels_last=cfg.channels_last)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return
    dataset = config["datasets"][config["drit"]["dataset"]]
    batch = int(config.get("synthesize", {}).get("batch_size", 16))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        r = bench(cfg, float(dataset["pixel_size_A"]), int(dataset["image_size_px"]), batch, device,
                  args.iterations, args.repeats)
        results.append(r)
        print(json.dumps(r))
    out = {"config": args.config, "architecture": cfg.architecture.to_dict(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "allocator": malloc_name(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "results": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
