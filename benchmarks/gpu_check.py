"""Paper-scale check for one GPU (H100/H200 class), in about 8 minutes, writing one JSON file.

Run:  .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json] [--smoke]

1. Regressor throughput: ResNet-50 (the paper's) training and inference images/s at 256² and 512²,
   fp32 and bf16 autocast, channels-last.
2. A short paper-scale training whose loss must fall: ReS2 bilayer slips simulated at the paper's
   pixel size (0.04 Å/px, config/paper.yaml), ResNet-50 on 512² crops, batch 32, bf16; reports
   the loss at the start and the end and the mean ΔD on held-out simulations.
3. DRIT at config/paper.yaml's architecture (nf 64): training iterations/s at crop 300 and the
   translation time of one 1024² image (random weights: timing only).

``--smoke`` runs every part at toy sizes on whatever device there is (CPU here), so the script is
exercised by the test suite and cannot rot between GPU sessions. Exit status 1 when the training's
loss did not fall.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vdwstack.core.torch_utils import autocast_dtype, resolve_device
from vdwstack.drit.networks import DritArchitecture
from vdwstack.drit.training import DritConfig, DritTrainer
from vdwstack.regress.augment import Augmentation
from vdwstack.regress.model import Regressor, TargetCodec, build_resnet, export_regressor
from vdwstack.regress.training import RegressorConfig, TrainingData, train_regressor
from vdwstack.simulate.render import simulate_rows
from vdwstack.structures.enumeration import enumerate_dataset
from vdwstack.structures.symmetry import symmetry_for


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(device: torch.device, sizes: list[int], batch: int, repeats: int, arch: str) -> list[dict]:
    rows = []
    for size in sizes:
        for amp in (False, True):
            model = build_resnet(arch, 24).to(device, memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
            y = torch.randn(batch, 24, device=device)
            dtype = torch.bfloat16 if amp and (device.type == "cuda" or autocast_dtype(device, True)) else None

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = torch.nn.functional.mse_loss(model(x).float(), y)
                loss.backward()
                opt.step()

            step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                step()
            _sync(device)
            train = repeats * batch / (time.perf_counter() - t0)
            model.eval()
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                model(x)
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    model(x)
                _sync(device)
            infer = repeats * batch / (time.perf_counter() - t0)
            rows.append({"architecture": arch, "input_px": size, "batch": batch,
                         "precision": "bfloat16" if dtype else "float32",
                         "train_images_per_s": train, "inference_images_per_s": infer})
            print(f"{arch} {size}² {rows[-1]['precision']}: train {train:.1f} img/s, inference {infer:.1f} img/s",
                  flush=True)
    return rows


def short_training(device: torch.device, smoke: bool) -> dict:
    """ReS2 slips at the paper's pixel size; ResNet-50 (resnet18 in smoke) trained briefly."""
    p, img_px, crop = (0.12, 96, 64) if smoke else (0.04, 576, 512)
    spec = {"material": "ReS2", "layers": 2, "slip_step_A": 1.0 if smoke else 0.4, "samples_per_stacking": 1,
            "pixel_size_A": p, "image_size_px": img_px}
    realism = {"random_rotation": True}
    t0 = time.perf_counter()
    train = enumerate_dataset("gpu_check_train", spec, seed=1, realism=realism)
    test = enumerate_dataset("gpu_check_test", {**spec, "slip_step_A": 1.3 if smoke else 0.55}, seed=2,
                             realism=realism)
    train_imgs = simulate_rows(train.to_dict("records"), workers=4)
    test_imgs = simulate_rows(test.to_dict("records"), workers=4)
    sim_s = time.perf_counter() - t0
    codec = TargetCodec("slip", "ReS2", 2)
    data = TrainingData(train_imgs, {k: train[k].to_numpy() for k in ("Da_A", "Db_A")}, codec, p, crop,
                        Augmentation(), raw_intensity=True)
    steps = 8 if smoke else 300
    cfg = RegressorConfig(architecture="resnet18" if smoke else "resnet50", crop_px=crop,
                          batch_size=4 if smoke else 32, steps=steps, lr=1e-3, warmup_steps=max(1, steps // 10),
                          checkpoint_every=10_000, device=device.type)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model, _ = train_regressor(data, cfg, tmp, progress=False)
        _sync(device)
        train_s = time.perf_counter() - t0
        losses = np.loadtxt(Path(tmp) / "losses.csv", delimiter=",", skiprows=1, usecols=2, ndmin=1)
        export_regressor(model, tmp, {"architecture": cfg.architecture, "encoding": codec.to_dict(),
                                      "input": {"pixel_size_A": p, "crop_px": crop}})
        reg = Regressor(tmp, device=str(device))
        pred = reg.predict(test_imgs, p)
    err = symmetry_for("ReS2").slip_error_A(pred["Da_A"], pred["Db_A"], test["Da_A"].to_numpy(), test["Db_A"].to_numpy())
    k = max(1, min(20, steps // 4))
    first, last = float(losses[:k].mean()), float(losses[-k:].mean())
    print(f"training {cfg.architecture} {crop}² x{cfg.batch_size}, {steps} steps in {train_s:.0f} s: "
          f"loss {first:.4f} -> {last:.4f}; held-out mean ΔD {err.mean():.3f} Å", flush=True)
    return {"architecture": cfg.architecture, "crop_px": crop, "pixel_size_A": p, "batch": cfg.batch_size,
            "steps": steps, "n_train": len(train), "n_test": len(test), "simulation_s": sim_s,
            "training_s": train_s, "steps_per_s": steps / train_s, "first_loss": first, "last_loss": last,
            "loss_fell": last < first, "test_mean_dD_A": float(err.mean()), "test_median_dD_A": float(np.median(err))}


def drit_timing(device: torch.device, smoke: bool) -> dict:
    arch = DritArchitecture(nf=16, nz=8, n_res=1, disc_scales=2, disc_layers=2) if smoke else \
        DritArchitecture(nf=64, nz=8, n_res=3, disc_scales=3, disc_layers=4)
    crop, batch, iters, image = (64, 1, 2, 128) if smoke else (300, 4, 10, 1024)
    cfg = DritConfig(crop_px=crop, batch_size=batch, architecture=arch, device=device.type)
    trainer = DritTrainer(cfg, 0.05, device)
    a = torch.rand(batch, 1, crop, crop, device=device)
    b = torch.rand(batch, 1, crop, crop, device=device)
    trainer.step(a, b)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        trainer.step(a, b)
    _sync(device)
    it_s = (time.perf_counter() - t0) / iters
    model = trainer.model.eval()
    sim = torch.rand(1, 1, image, image, device=device)
    style = torch.rand(1, 1, crop, crop, device=device)
    with torch.no_grad():
        model.translate(sim, style=style)
        _sync(device)
        t0 = time.perf_counter()
        model.translate(sim, style=style)
        _sync(device)
    tr_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DRIT nf {arch.nf} ({n_params / 1e6:.0f} M parameters): {1 / it_s:.2f} it/s at crop {crop} batch {batch}; "
          f"{image}² translation {tr_s:.2f} s", flush=True)
    return {"nf": arch.nf, "parameters": n_params, "crop_px": crop, "batch": batch, "iterations_per_s": 1 / it_s,
            "seconds_per_iteration": it_s, "translate_px": image, "translate_s": tr_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on any device (the test suite's run)")
    args = ap.parse_args()
    device = resolve_device("auto")
    t0 = time.perf_counter()
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "smoke": args.smoke}
    result["throughput"] = throughput(device, [64] if args.smoke else [256, 512], 2 if args.smoke else 32,
                                      1 if args.smoke else 10, "resnet18" if args.smoke else "resnet50")
    result["training"] = short_training(device, args.smoke)
    result["drit"] = drit_timing(device, args.smoke)
    result["total_s"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_s']:.0f} s)")
    return 0 if result["training"]["loss_fell"] else 1


if __name__ == "__main__":
    sys.exit(main())
