"""Stage 3, drit_train: simulations + style references → trained translator, samples, metrics."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vdwstack.core.images import normalize_unit
from vdwstack.core.io import keep_checkpoints_only_for, open_image_dataset
from vdwstack.drit.data import DomainSampler, load_style_references, random_crop
from vdwstack.drit.metrics import bragg_slip_A, column_displacement_A, style_distance
from vdwstack.drit.training import (
    DritConfig,
    export_translator,
    save_sample_grid,
    train,
)
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)


def _fingerprint(sim_path: Path, root, refs_rows: Sequence[Mapping], cfg: DritConfig) -> str:
    """Identity of what a checkpoint was trained on: resuming from anything else would be wrong."""
    h = hashlib.sha256()
    h.update(str(root.attrs.get("config_hash")).encode())
    for r in refs_rows:
        h.update(Path(r["path"]).read_bytes())
        h.update(str(r.get("pixel_size_A", "")).encode())
    d = cfg.to_dict()
    # The iteration count stays in: the learning-rate decay spans it, so a run continued to more
    # iterations is not what a fresh run of the config gives (and one past fewer would be kept).
    d.pop("checkpoint_every")
    d.pop("sample_every")
    h.update(json.dumps(d, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def train_drit(sim_zarr: str | Path, style_sheet: str | Path, drit_config: Mapping | None, out_dir: str | Path,
               eval_images: int = 12, progress: bool = True) -> dict:
    """Train DRIT and write generator.safetensors, card.json, losses.csv, samples/, metrics.json."""
    cfg = DritConfig.from_mapping(drit_config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root, labels = open_image_dataset(sim_zarr)
    p = float(root.attrs["pixel_size_A"])
    material = root.attrs["material"][0]
    sheet = pd.read_csv(style_sheet, sep="\t", dtype=str, comment="#").fillna("")
    rows = sheet.to_dict("records")
    refs = load_style_references(rows, material, p, match_pixel_size=cfg.few_image_augmentation)
    sims = root["images"][:]
    sampler = DomainSampler(sims, refs, cfg.crop_px, augment_refs=cfg.few_image_augmentation)

    fp = _fingerprint(Path(sim_zarr), root, rows, cfg)
    keep_checkpoints_only_for(out, fp)

    trainer = train(sampler, cfg, out, p, progress=progress)
    save_sample_grid(trainer.model, sampler, out / "samples" / "final.png", cfg.seed)
    metrics = evaluate_translation(trainer.model, sims, labels, material, refs, cfg, eval_images, p)
    card = {
        "model": "Trident-enhanced DRIT translator (E_c^A + shared block, E_a^B, G_B)",
        "input": {"channels": 1, "normalization": "percentiles 0.5/99.5 → [−1, 1]", "pixel_size_A": p,
                  "size_multiple_px": 4, "train_crop_px": cfg.crop_px},
        "training": {"simulations": str(sim_zarr), "simulations_config_hash": root.attrs.get("config_hash"),
                     "n_simulations": int(len(sims)), "material": material,
                     "style_references": [{"id": r.reference_id, "pixel_size_A": r.pixel_size_A,
                                           "pixel_size_source": r.pixel_size_source} for r in refs],
                     "iterations": trainer.iteration, "config": cfg.to_dict(), "fingerprint": fp,
                     "device": str(trainer.device)},
        "metrics": metrics,
    }
    export_translator(trainer.model, out, card)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@torch.no_grad()
def evaluate_translation(model, sims: np.ndarray, labels: pd.DataFrame, material: str, refs, cfg: DritConfig,
                         n_eval: int = 12, sims_pixel_size_A: float = 0.1) -> dict:
    """Style distance, column displacement and Bragg slip change of translated simulations
    (`n_eval` full images [N, H, W] at `sims_pixel_size_A` Å/px, not crops)."""
    rng = np.random.default_rng([cfg.seed, 424242])
    idx = np.sort(rng.choice(len(sims), size=min(n_eval, len(sims)), replace=False))
    dev = next(model.parameters()).device
    model.eval()
    p = float(sims_pixel_size_A)
    H, W = sims.shape[1:]
    Hc, Wc = H // 4 * 4, W // 4 * 4
    src = np.stack([normalize_unit(sims[i, :Hc, :Wc]) for i in idx])[:, None]
    style = np.stack([normalize_unit(random_crop(refs[rng.integers(len(refs))].image, cfg.crop_px, rng))
                      for _ in idx])[:, None]
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    trans = model.translate(torch.from_numpy(src).to(dev), style=torch.from_numpy(style).to(dev), generator=gen)
    trans = trans.cpu().numpy()
    crop = min(cfg.crop_px, Hc, Wc)
    ref_crops = [normalize_unit(random_crop(refs[rng.integers(len(refs))].image, crop, rng)) for _ in range(4 * len(idx))]
    sim_crops = [s[0, :crop, :crop] for s in src]
    tr_crops = [t[0, :crop, :crop] for t in trans]
    d_sim = style_distance(sim_crops, ref_crops)
    d_tr = style_distance(tr_crops, ref_crops)

    disp = [column_displacement_A(src[k, 0], trans[k, 0], p) for k in range(len(idx))]
    disp_all = np.array([d["mean_A"] for d in disp if d["n_columns"] > 0])

    sym = symmetry_for(material)
    slip_before, slip_after, slip_true = [], [], []
    for k, i in enumerate(idx):
        row = labels.iloc[i].to_dict()
        row["material"] = material
        row["pixel_size_A"] = p
        if int(row["layers"]) != 2 or float(row["theta_deg"]) != 0.0:
            continue
        row.update(height_px=Hc, width_px=Wc)
        mono = simulate_row({**row, "layers": 1})
        slip_before.append(bragg_slip_A(src[k, 0], mono, row))
        slip_after.append(bragg_slip_A(trans[k, 0], mono, row))
        slip_true.append((row["Da_A"], row["Db_A"]))
    out = {
        "n_images": int(len(idx)),
        "pixel_size_A": p,
        "style_distance": {"simulation_to_experiment": d_sim, "translation_to_experiment": d_tr,
                           "translation_closer": bool(d_tr["power_spectrum"] < d_sim["power_spectrum"]
                                                      and d_tr["histogram"] < d_sim["histogram"])},
        "content_fidelity": {"column_displacement_mean_A": float(disp_all.mean()) if len(disp_all) else None,
                             "column_displacement_p95_A": float(np.percentile([d["p95_A"] for d in disp if d["n_columns"]], 95))
                             if len(disp_all) else None,
                             "n_columns": int(sum(d["n_columns"] for d in disp))},
    }
    if slip_before:
        b, a, t = (np.array(v) for v in (slip_before, slip_after, slip_true))
        change = sym.slip_error_A(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
        out["bragg_slip"] = {
            "n_images": int(len(b)),
            "change_mean_A": float(change.mean()),
            "change_max_A": float(change.max()),
            "within_0.05_A": float(np.mean(change <= 0.05)),
            "estimator_error_on_simulation_mean_A": float(sym.slip_error_A(b[:, 0], b[:, 1], t[:, 0], t[:, 1]).mean()),
        }
    model.train()
    return out
