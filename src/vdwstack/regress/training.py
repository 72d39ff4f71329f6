"""Training of one regressor: settings, augmented batches, the loop with checkpoint/resume."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vdwstack.core.allocator import retain_freed_memory
from vdwstack.core.errors import ConfigError
from vdwstack.core.io import open_loss_log, publish_loss_log
from vdwstack.core.resample import resample
from vdwstack.core.settings import setting, settings_from_mapping
from vdwstack.regress.spline import SplineImages
from vdwstack.core.torch_utils import (
    autocast_dtype,
    fused_adam_kwargs,
    load_weights_only,
    make_deterministic,
    resolve_device,
)
from vdwstack.regress.augment import Augmentation, augment_crop, random_crops
from vdwstack.regress.model import ARCHITECTURES, TargetCodec, build_resnet, load_backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegressorConfig:
    """Training settings of one regressor (config ``regress.settings``, overridden per study / twist).

    ``task`` is routing (which model is trained), set by the workflow, not a config key.
    """

    task: str = setting("slip", "slip | twist", enum=["slip", "twist"])
    architecture: str = setting("resnet50", "torchvision ResNet (paper: resnet50)", enum=list(ARCHITECTURES))
    crop_px: int = setting(128, "input crop side (px; paper: 512); the largest side when min_crop_px is set",
                           minimum=32)
    min_crop_px: int | None = setting(None, "train on crop sides drawn per batch from [min_crop_px, crop_px], so "
                                            "the model reads images smaller than its full field (null: fixed)",
                                      minimum=32)
    pixel_size_A: float | None = setting(None, "the model's input pixel size (Å/px): the dataset is rescaled to it "
                                               "once (null: the dataset's own)", exclusiveMinimum=0)
    slip_orders: int | None = setting(None, "slip targets: highest |h|, |k| of the reciprocal-lattice vectors whose "
                                            "cosines the network reads (null: 3 for two-fold bilayers such as ReS2, "
                                            "6 for hexagonal ones, 2 for trilayers); higher orders resolve finer "
                                            "slips but are harder to read", minimum=1, maximum=6)
    twist_harmonics: int = setting(3, "twist targets: cos(2πnθ/P), n = 1…twist_harmonics; more read twists near 0° "
                                      "and 60° finer (the targets' curvature there grows as n²) but need more "
                                      "training images to keep each alignment (the demo: 4, ~100 images; "
                                      "config/cpu_hour.yaml: 6, with 24 samples per angle; docs/measurements.md)",
                                   minimum=1, maximum=12)
    slope_weighting: float = setting(0.0, "each target's loss weight ∝ (its mean squared slope over slips, "
                                          "1/Å², or over twists, 1/degree²)^slope_weighting (0: equal; 1: the "
                                          "loss ≈ the slip or twist error squared; −1: the coarse, low-order "
                                          "features count most — for the twist the first harmonic, which picks the "
                                          "alignment, AA-like or AA′-like, and the rough angle)",
                                     minimum=-2, maximum=2)
    mirror_flips: bool = setting(False, "lattices with a mirror line (2H MX2): half the crops flipped, their targets "
                                        "mapped to the mirrored stack (a twist dataset's θ then holds −θ too); "
                                        "no effect on ReX2")
    batch_size: int = setting(16, "images per step", minimum=1)
    steps: int = setting(2000, "optimiser steps", minimum=1)
    lr: float = setting(1e-3, "AdamW peak learning rate (warm-up, then cosine decay)", exclusiveMinimum=0)
    weight_decay: float = setting(1e-4, "AdamW weight decay", minimum=0)
    warmup_steps: int = setting(100, "linear warm-up steps", minimum=0)
    checkpoint_every: int = setting(200, "steps between checkpoints (resume after a kill)", minimum=1)
    seed: int = setting(0, "seed of weights and data stream", minimum=0)
    device: str = setting("auto", "auto (cuda when visible) | cpu | cuda", enum=["auto", "cpu", "cuda"])
    mixed_precision: bool = setting(True, "autocast: fp16 on CUDA, bf16 on a CPU with native bf16 "
                                          "(avx512_bf16/AMX; elsewhere fp32); not with deterministic")
    channels_last: bool = setting(True, "channels-last memory layout (faster convolutions on CPU and GPU)")
    prefetch: bool = setting(True, "augment the next batch in a background thread while the model trains, when a "
                                   "core is free for it (GPU training, or fewer torch threads than the job's CPUs)")
    augment: bool = setting(True, "noise, blur, contamination, rotations, scale jitter")
    deterministic: bool = setting(False, "bit-identical weights for the same seed and device "
                                         "(deterministic kernels, no mixed precision)")

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> RegressorConfig:
        cfg = settings_from_mapping(cls, m, "regress")
        if cfg.min_crop_px is not None and cfg.min_crop_px > cfg.crop_px:
            raise ConfigError(f"regress: min_crop_px ({cfg.min_crop_px}) is larger than crop_px ({cfg.crop_px})")
        if cfg.warmup_steps >= cfg.steps:  # a warning only: a smoke test trains a few steps on purpose
            log.warning("regress: warmup_steps (%d) is not fewer than steps (%d): the learning rate never leaves its "
                        "warm-up (a config merged over another keeps the other's steps unless it sets its own)",
                        cfg.warmup_steps, cfg.steps)
        return cfg

    def crop_for_step(self, rng: np.random.Generator) -> int:
        """This batch's crop side (px): crop_px, or drawn from [min_crop_px, crop_px] in steps of 8."""
        if self.min_crop_px is None or self.min_crop_px == self.crop_px:
            return self.crop_px
        return int(rng.choice(np.arange(self.min_crop_px, self.crop_px + 1, 8)))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class TrainingData:
    """Random augmented crops with their targets, from an images array [N, H, W] + labels.

    ``pixel_size_A`` is the images'; ``model_pixel_size_A`` the model's input (the images are
    rescaled to it once, anti-aliased). The images are kept as cubic-spline coefficients (as much
    memory as the images, up to 4 GB; see :class:`SplineImages`) so that a batch's rotated crops
    are interpolated together."""

    def __init__(self, images, labels: Mapping[str, np.ndarray], codec: TargetCodec, pixel_size_A: float,
                 crop_px: int, aug: Augmentation, raw_intensity: bool, model_pixel_size_A: float | None = None):
        self.codec = codec
        p_model = float(model_pixel_size_A or pixel_size_A)
        if abs(p_model - pixel_size_A) > 1e-9 * pixel_size_A:
            images = np.stack([resample(np.asarray(im, np.float32), pixel_size_A, p_model) for im in images])
        self.images = SplineImages(images)
        self.targets = codec.encode(labels).astype(np.float32)
        self.flips = aug.mirror and codec.has_mirror
        self.pixel_size_A, self.crop_px, self.aug, self.raw = p_model, crop_px, aug, raw_intensity
        side = min(np.shape(images)[1:])
        if side < crop_px + 4:  # random crops keep 2 px from the edges (interpolation)
            raise ValueError(f"training images are {side} px at the model's {p_model:g} Å/px: too small for "
                             f"crop_px={crop_px} (need {crop_px + 4}; simulate larger images or lower crop_px)")

    def batch(self, n: int, rng: np.random.Generator, crop_px: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(len(self.targets), size=n)
        c = crop_px or self.crop_px
        crops = random_crops(self.images, idx, c, rng, rotate=self.aug.rotate, scale_jitter=self.aug.scale_jitter)
        targets = self.targets[idx]
        if self.flips:  # a flipped crop shows the mirrored stack
            flip = rng.random(n) < 0.5
            crops[flip] = crops[flip][:, ::-1]
            targets[flip] = self.codec.mirrored_features(targets[flip])
        x = np.stack([augment_crop(crop, self.pixel_size_A, self.aug, rng, self.raw) for crop in crops])[:, None]
        return x, targets


def _core_to_spare(device: torch.device, cores: int | None = None) -> bool:
    """Whether a prefetch thread would run on a core the model does not use. `cores`: the CPUs this job
    may use (a Snakemake job's `threads`) when fewer than the process's affinity: two one-thread
    trainings side by side on 2 cores have none to spare (four alternating pairs, ResNet-18, 112² crops,
    one torch thread each: with the thread 4.96 / 5.35 / 6.26 / 6.13 steps/s together, without it
    5.05 / 5.52 / 6.20 / 6.22 — a small gain at most; the batches are the same either way)."""
    if device.type == "cuda":
        return True
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores is not None:
        cpus = min(cpus, cores)
    return cpus > torch.get_num_threads()


class BatchStream:
    """The batch of each step, drawn from an rng seeded by (seed, step) so a resumed run sees the same
    stream; with ``prefetch`` the next batch is augmented in a thread while the model trains (numpy and
    scipy release the GIL in their kernels, torch does in its ops). Only where a core is free: on a
    CPU whose cores all run the model's threads, the extra thread stalls them more than it saves
    (ResNet-18, 112² crops, 2 cores: 6.05 steps/s with the thread, 6.3 without)."""

    def __init__(self, data: TrainingData, cfg: RegressorConfig, device: torch.device | None = None,
                 cores: int | None = None):
        self.data, self.cfg = data, cfg
        use = cfg.prefetch and _core_to_spare(device or torch.device("cpu"), cores)
        self.pool = ThreadPoolExecutor(max_workers=1) if use else None
        self.pending: tuple[int, Future] | None = None

    def _make(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.cfg.seed, step])
        crop = self.cfg.crop_for_step(rng)
        return self.data.batch(self.cfg.batch_size, rng, crop)

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self.pool is None:
            return self._make(step)
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self._make(step)
        if step + 1 < self.cfg.steps:
            self.pending = (step + 1, self.pool.submit(self._make, step + 1))
        return batch

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _save_checkpoint(path: Path, model: nn.Module, opt, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def _resume(path: Path, model: nn.Module, opt) -> int:
    if not path.exists():
        return 0
    state = load_weights_only(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed from %s at step %d", path, int(state["step"]))
    return int(state["step"])


def train_regressor(data: TrainingData, cfg: RegressorConfig, out_dir: str | Path, progress: bool = True,
                    stop_after: int | None = None, init_weights: str | Path | None = None,
                    cores: int | None = None) -> tuple[nn.Module, int]:
    """Train (resuming from out_dir/checkpoints/last.pt when present); returns (model, steps done).

    `init_weights`: another regressor's model.safetensors whose backbone starts this one (a trilayer
    model from the bilayer's: from random weights its loss stalls at the targets' variance).
    `cores`: CPUs this job may use (None: the process's affinity); decides the prefetch thread only."""
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device if cfg.device != "cuda" else "cuda")
    if device.type == "cpu":
        retain_freed_memory()  # large crops: no page faults for the same activations every step
    make_deterministic(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_resnet(cfg.architecture, data.codec.dim)
    if init_weights is not None:
        load_backbone(model, init_weights)
    model = model.to(device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused_adam_kwargs(device))
    amp = autocast_dtype(device, cfg.mixed_precision and not cfg.deterministic)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)  # bf16 needs no loss scaling
    ckpt = out / "checkpoints" / "last.pt"
    step = _resume(ckpt, model, opt)
    fh = open_loss_log(out, step)
    writer = csv.writer(fh)
    if fh.tell() == 0:
        writer.writerow(["step", "seconds", "loss", "lr"])
    model.train()
    stream = BatchStream(data, cfg, device, cores)
    loss_w = None
    if cfg.slope_weighting != 0:
        loss_w = torch.from_numpy(data.codec.loss_weights(cfg.slope_weighting)).float().to(device)
    t0, done = time.perf_counter(), 0
    try:
        with tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.task}", unit="step", disable=not progress) as bar:
            while step < cfg.steps and (stop_after is None or done < stop_after):
                x, y = stream.get(step)
                x = torch.from_numpy(x).to(device).contiguous(memory_format=fmt)
                y = torch.from_numpy(y).to(device)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    pred = model(x).float()
                    # equal weights keep torch's own MSE: the same kernels, so the same weights as before
                    loss = nn.functional.mse_loss(pred, y) if loss_w is None else ((pred - y) ** 2 * loss_w).mean()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                step += 1
                done += 1
                value = loss.item()
                writer.writerow([step, f"{time.perf_counter() - t0:.3f}", f"{value:.6g}", f"{opt.param_groups[0]['lr']:.3g}"])
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    fh.flush()
                    _save_checkpoint(ckpt, model, opt, step)
    finally:
        stream.close()
        fh.close()
    publish_loss_log(out)
    return model.to(memory_format=torch.contiguous_format), step
