"""Training of one regressor: settings, augmented batches, the loop with checkpoint/resume."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vdwstack.core.io import open_loss_log, publish_loss_log
from vdwstack.core.settings import setting, settings_from_mapping
from vdwstack.core.torch_utils import (
    load_weights_only,
    make_deterministic,
    resolve_device,
)
from vdwstack.regress.augment import Augmentation, augment
from vdwstack.regress.model import ARCHITECTURES, TargetCodec, build_resnet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegressorConfig:
    """Training settings of one regressor (config ``regress.settings``, overridden per study / twist).

    ``task`` is routing (which model is trained), set by the workflow, not a config key.
    """

    task: str = setting("slip", "slip | twist", enum=["slip", "twist"])
    architecture: str = setting("resnet50", "torchvision ResNet (paper: resnet50)", enum=list(ARCHITECTURES))
    crop_px: int = setting(128, "input crop side (px; paper: 512)", minimum=32)
    batch_size: int = setting(16, "images per step", minimum=1)
    steps: int = setting(2000, "optimiser steps", minimum=1)
    lr: float = setting(1e-3, "AdamW peak learning rate (warm-up, then cosine decay)", exclusiveMinimum=0)
    weight_decay: float = setting(1e-4, "AdamW weight decay", minimum=0)
    warmup_steps: int = setting(100, "linear warm-up steps", minimum=0)
    checkpoint_every: int = setting(200, "steps between checkpoints (resume after a kill)", minimum=1)
    seed: int = setting(0, "seed of weights and data stream", minimum=0)
    device: str = setting("auto", "auto (cuda when visible) | cpu | cuda", enum=["auto", "cpu", "cuda"])
    mixed_precision: bool = setting(True, "autocast on CUDA (not with deterministic)")
    augment: bool = setting(True, "noise, blur, contamination, rotations, scale jitter")
    deterministic: bool = setting(False, "bit-identical weights for the same seed and device "
                                         "(deterministic kernels, no mixed precision)")

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> RegressorConfig:
        return settings_from_mapping(cls, m, "regress")


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class TrainingData:
    """Random augmented crops with their targets, from an images array [N, H, W] + labels."""

    def __init__(self, images, labels: Mapping[str, np.ndarray], codec: TargetCodec, pixel_size_A: float,
                 crop_px: int, aug: Augmentation, raw_intensity: bool):
        self.images, self.codec = images, codec
        self.targets = codec.encode(labels).astype(np.float32)
        self.pixel_size_A, self.crop_px, self.aug, self.raw = pixel_size_A, crop_px, aug, raw_intensity

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(len(self.targets), size=n)
        x = np.stack([augment(np.asarray(self.images[i]), self.pixel_size_A, self.crop_px, self.aug, rng, self.raw)
                      for i in idx])[:, None]
        return x, self.targets[idx]


def train_regressor(data: TrainingData, cfg: RegressorConfig, out_dir: str | Path, progress: bool = True,
                    stop_after: int | None = None) -> tuple[nn.Module, int]:
    """Train (resuming from out_dir/checkpoints/last.pt when present); returns (model, steps done)."""
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device if cfg.device != "cuda" else "cuda")
    make_deterministic(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    model = build_resnet(cfg.architecture, data.codec.dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = cfg.mixed_precision and device.type == "cuda" and not cfg.deterministic
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step = 0
    ckpt = out / "checkpoints" / "last.pt"
    if ckpt.exists():
        state = load_weights_only(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
        log.info("resumed from %s at step %d", ckpt, step)
    fh = open_loss_log(out, step)
    writer = csv.writer(fh)
    if fh.tell() == 0:
        writer.writerow(["step", "seconds", "loss", "lr"])
    model.train()
    t0, done = time.perf_counter(), 0
    try:
        with tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.task}", unit="step", disable=not progress) as bar:
            while step < cfg.steps and (stop_after is None or done < stop_after):
                rng = np.random.default_rng([cfg.seed, step])  # resumable data stream
                x, y = data.batch(cfg.batch_size, rng)
                x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, enabled=amp):
                    loss = nn.functional.mse_loss(model(x).float(), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                step += 1
                done += 1
                writer.writerow([step, f"{time.perf_counter() - t0:.3f}", f"{loss.item():.6g}", f"{opt.param_groups[0]['lr']:.3g}"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    fh.flush()
                    tmp = ckpt.with_suffix(".tmp")
                    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                                "torch_rng": torch.get_rng_state()}, tmp)
                    os.replace(tmp, ckpt)
    finally:
        fh.close()
    publish_loss_log(out)
    return model, step

