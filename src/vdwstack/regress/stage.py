"""Stage 5, regress: a synthesized dataset → a trained regressor + card (rules ``train_slip``,
``train_twist``), and its evaluation on held-out generated images (``evaluate_slip``, ``evaluate_twist``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vdwstack.core.io import keep_checkpoints_only_for, open_image_dataset
from vdwstack.core.torch_utils import autocast_dtype, resolve_device
from vdwstack.regress.augment import Augmentation
from vdwstack.regress.evaluate import evaluate_slip, evaluate_twist
from vdwstack.regress.model import Regressor, TargetCodec, decoding_weights, export_regressor, write_card
from vdwstack.regress.training import RegressorConfig, TrainingData, train_regressor

log = logging.getLogger(__name__)

__all__ = ["evaluate_slip", "evaluate_twist", "train_from_dataset"]


def train_from_dataset(train_zarr: str | Path, settings: Mapping, task: str, out_dir: str | Path,
                       progress: bool = True, init_weights: str | Path | None = None,
                       cores: int | None = None) -> dict:
    """Train a `task` regressor on a (synthesized or clean) image dataset; write model + card.
    `init_weights`: a model.safetensors whose backbone starts the network; `cores`: the CPUs this job
    may use (see train_regressor)."""
    cfg = RegressorConfig.from_mapping({**dict(settings), "task": task})
    root, labels = open_image_dataset(train_zarr)
    material = root.attrs["material"][0]
    layers = int(root.attrs["layers"][0])
    p = float(root.attrs["pixel_size_A"])
    raw = "normalized" not in str(root.attrs.get("intensity_unit", ""))
    codec = TargetCodec(task, material, layers, orders=cfg.slip_orders if task == "slip" else None,
                        harmonics=cfg.twist_harmonics if task == "twist" else None)
    aug = Augmentation(mirror=cfg.mirror_flips) if cfg.augment else Augmentation.off()
    imgs = root["images"][:]
    _guard_checkpoints(Path(out_dir), root, cfg, init_weights)
    label_arrays = {c: labels[c].to_numpy() for c in labels.columns if c != "sample_id"}
    data = TrainingData(imgs, label_arrays, codec, p, cfg.crop_px, aug, raw_intensity=raw,
                        model_pixel_size_A=cfg.pixel_size_A)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    model, steps = train_regressor(data, cfg, out_dir, progress=progress, init_weights=init_weights, cores=cores)
    seconds = time.perf_counter() - t0
    losses = np.loadtxt(Path(out_dir) / "losses.csv", delimiter=",", skiprows=1, usecols=2, ndmin=1)
    card = {
        "architecture": cfg.architecture,
        "task": task,
        "input": {"channels": 1, "crop_px": cfg.crop_px, "min_crop_px": cfg.min_crop_px or cfg.crop_px,
                  "pixel_size_A": data.pixel_size_A, "field_of_view_A": cfg.crop_px * data.pixel_size_A,
                  "dataset_pixel_size_A": p,
                  "normalization": "percentiles 0.5/99.5 → [−1, 1]", "orientation": "any (trained with rotations)"},
        "encoding": codec.to_dict(),
        "training": {"dataset": str(train_zarr), "n_images": int(len(imgs)), "config_hash": root.attrs.get("config_hash"),
                     "slip_step_A": _grid_step(labels) if task == "slip" else None,
                     "settings": asdict(cfg), "augmentation": asdict(aug), "steps": steps,
                     "initialised_from": str(init_weights) if init_weights is not None else None,
                     "seconds": seconds, "images_per_s": steps * cfg.batch_size / max(seconds, 1e-9),
                     "device": str(device), "precision": str(autocast_dtype(device, cfg.mixed_precision
                                                                             and not cfg.deterministic) or "float32")},
        "metrics": {"final_loss": float(np.mean(losses[-20:])), "first_loss": float(np.mean(losses[:20]))},
    }
    export_regressor(model, out_dir, card)
    if task == "slip":  # weights of the decoding: the features the network reads worst count least
        reg = Regressor(out_dir, device=str(device), mixed_precision=cfg.mixed_precision and not cfg.deterministic)
        card["decoding"] = decoding_weights(reg, imgs, p, label_arrays, seed=cfg.seed)
        write_card(out_dir, card)
    return card


def _guard_checkpoints(out: Path, root, cfg: RegressorConfig, init_weights: str | Path | None = None) -> None:
    """Resume only a run on the same data, settings (the step count included) and starting weights.

    Another step count starts afresh: the learning-rate schedule spans the run's steps, so a run
    continued to more steps is not the model a fresh run of that config gives, and a checkpoint
    past fewer steps would be published as if it had stopped there. A model depends on its config
    only, never on what ran before in its folder."""
    import hashlib
    import json

    settings = asdict(cfg)
    settings.pop("checkpoint_every")
    init = hashlib.sha256(Path(init_weights).read_bytes()).hexdigest() if init_weights is not None else None
    ident = json.dumps({"data": [root.attrs.get("config_hash"), root.attrs.get("drit_fingerprint"),
                                 list(root["images"].shape)], "settings": settings,
                        **({"init": init} if init else {})},
                       sort_keys=True, default=str)
    keep_checkpoints_only_for(out, hashlib.sha256(ident.encode()).hexdigest()[:16])


def _grid_step(labels) -> float | None:
    """Grid step of the training slips (Å): smallest non-zero difference of the Da values."""
    d = np.diff(np.unique(np.round(labels["Da_A"].to_numpy(), 6)))
    d = d[d > 1e-6]
    return float(d.min()) if len(d) else None
