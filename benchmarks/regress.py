"""Regressor throughput: training images/s and inference tiles/s at 256² and 512² inputs.

Run:  .venv/bin/python benchmarks/regress.py [--architectures resnet18 resnet50] [--out benchmarks/regress.json]
Uses random inputs (throughput does not depend on content); CPU, and the GPU when one is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from vdwstack.regress.model import build_resnet


def bench(arch: str, size: int, device: torch.device, batch: int, repeats: int) -> dict:
    model = build_resnet(arch, 24).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randn(batch, 24, device=device)
    amp = device.type == "cuda"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        opt.step()

    train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        train_step()
    sync()
    train_ips = repeats * batch / (time.perf_counter() - t0)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync()
    infer_tps = repeats * batch / (time.perf_counter() - t0)
    return {"architecture": arch, "input_px": size, "device": str(device), "batch": batch,
            "train_images_per_s": train_ips, "inference_tiles_per_s": infer_tps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--architectures", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/regress.json")
    args = ap.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        for arch in args.architectures:
            for size in args.sizes:
                batch = 8 if dev.type == "cpu" else 32
                r = bench(arch, size, dev, batch, args.repeats if dev.type == "cpu" else 20)
                rows.append(r)
                print(f"{dev.type:4s} {arch:9s} {size:4d}²: train {r['train_images_per_s']:8.1f} img/s, "
                      f"inference {r['inference_tiles_per_s']:8.1f} tiles/s", flush=True)
    with open(args.out, "w") as f:
        json.dump({"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
