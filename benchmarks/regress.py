"""Regressor throughput: training steps/s and inference tiles/s, fp32 vs bf16/fp16 autocast,
contiguous vs channels-last, and the whole training loop (augmentation included) with and without
the prefetching thread.

Run:  .venv/bin/python benchmarks/regress.py [--sizes 112 168 512] [--out benchmarks/regress.json]
          [--threads N] [--compile]

``--compile`` adds, per size, the bf16 channels-last step of a ``torch.compile``d network (inductor;
the first step, which compiles, is timed apart as ``compile_s``): on these CPUs the convolutions'
oneDNN kernels are the time. ResNet-18, 112², batch 16, one thread (2026-12-06, `--threads 1
--compile --sizes 112 --repeats 30`): 3.50 steps/s eager, 3.40 compiled (compile 19 s); inference
212 vs 217 tiles/s. So training does not compile.

Model-only rows use random inputs (throughput does not depend on content). Loop rows run
:func:`vdwstack.regress.training.train_regressor` on random images of the sizes the demo and the
CPU-hour configuration train on, so the augmentation's cost is counted. The accuracy of each
precision is measured by training real models (see the issue notes: fp32 vs bf16 on the demo's
datasets); this script measures speed only. CPU always; the GPU too when one is visible.
Every row runs with the allocator setting the training loop uses (`vdwstack.core.allocator`; glibc
keeps freed memory, ResNet-50 at 512²: +18–22 % steps/s); `VDWSTACK_KEEP_FREED_MEMORY=0` measures
glibc's defaults. The JSON records which (`allocator`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from vdwstack.core.allocator import malloc_name, retain_freed_memory
from vdwstack.core.torch_utils import autocast_dtype, cpu_has_native_bf16
from vdwstack.regress.augment import Augmentation
from vdwstack.regress.model import TargetCodec, build_resnet
from vdwstack.regress.training import RegressorConfig, TrainingData, train_regressor


def model_only(arch: str, size: int, device: torch.device, batch: int, repeats: int, amp: bool,
               channels_last: bool, compiled: bool = False) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = build_resnet(arch, 24).to(device, memory_format=fmt)
    model = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randn(batch, 24, device=device)
    dtype = autocast_dtype(device, amp)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    train_step()
    sync()
    compile_s = time.perf_counter() - t0
    train_step()  # a compiled network's second call can still specialise
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        train_step()
    sync()
    train_s = (time.perf_counter() - t0) / repeats
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync()
    infer_s = (time.perf_counter() - t0) / repeats
    return {"kind": "model", "architecture": arch, "input_px": size, "device": str(device), "batch": batch,
            "precision": str(dtype or "float32").replace("torch.", ""), "channels_last": channels_last,
            "compiled": compiled, **({"compile_s": compile_s} if compiled else {}),
            "train_steps_per_s": 1 / train_s, "train_images_per_s": batch / train_s,
            "inference_tiles_per_s": batch / infer_s}


def whole_loop(crop: int, image_px: int, steps: int, **overrides) -> dict:
    """Steps/s of the real training loop (augmentation, optimiser, loss log) on random images."""
    rng = np.random.default_rng(0)
    images = rng.random((32, image_px, image_px), dtype=np.float32) * 0.01
    labels = {"Da_A": rng.uniform(-3, 3, 32), "Db_A": rng.uniform(-3, 3, 32)}
    codec = TargetCodec("slip", "ReS2", 2)
    data = TrainingData(images, labels, codec, 0.18, crop, Augmentation(), raw_intensity=True)
    cfg = RegressorConfig(architecture="resnet18", crop_px=crop, batch_size=16, steps=steps + 3, warmup_steps=1,
                          checkpoint_every=10_000, device="cpu", **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train_regressor(data, cfg, tmp, progress=False, stop_after=3)  # warm-up (oneDNN kernels)
        t0 = time.perf_counter()
        train_regressor(data, cfg, tmp, progress=False)
        seconds = time.perf_counter() - t0
    return {"kind": "loop", "architecture": "resnet18", "input_px": crop, "device": "cpu", "batch": 16,
            "precision": "bfloat16" if overrides.get("mixed_precision", True) and cpu_has_native_bf16() else "float32",
            "channels_last": overrides.get("channels_last", True), "prefetch": overrides.get("prefetch", True),
            "train_steps_per_s": steps / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--architectures", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 168, 512])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--loop-steps", type=int, default=30,
                    help="steps of each whole training loop measured (0: the model step alone, no loops)")
    ap.add_argument("--out", default="benchmarks/regress.json")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also the torch.compile'd bf16 channels-last step")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # as train_regressor does on the CPU, so every row runs alike
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        for arch in args.architectures:
            for size in args.sizes:
                batch = (16 if size <= 256 else 4) if dev.type == "cpu" else 32
                for amp, cl, comp in [(False, False, False), (False, True, False), (True, False, False),
                                      (True, True, False)] + [(True, True, True)] * args.compile:
                    r = model_only(arch, size, dev, batch, args.repeats if dev.type == "cpu" else 20, amp, cl, comp)
                    rows.append(r)
                    print(f"{dev.type:4s} {arch:9s} {size:4d}² b{batch:<3d} {r['precision']:8s} "
                          f"{'channels-last' if cl else 'contiguous   '}{' compiled' if comp else ''}: train {r['train_steps_per_s']:6.2f} steps/s "
                          f"({r['train_images_per_s']:7.1f} img/s), inference {r['inference_tiles_per_s']:7.1f} tiles/s",
                          flush=True)
    for crop, image_px in [(112, 160), (168, 192)] if args.loop_steps > 0 else []:
        for overrides in [dict(mixed_precision=False, channels_last=False, prefetch=False),
                          dict(mixed_precision=False, channels_last=True, prefetch=True), dict(prefetch=False), dict()]:
            r = whole_loop(crop, image_px, args.loop_steps, **overrides)
            rows.append(r)
            print(f"loop resnet18 {crop:4d}² b16 {r['precision']:8s} channels-last={r['channels_last']!s:5s} "
                  f"prefetch={r['prefetch']!s:5s}: {r['train_steps_per_s']:5.2f} steps/s", flush=True)
    with open(args.out, "w") as f:
        json.dump({"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "allocator": malloc_name(),
                   "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__, "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
