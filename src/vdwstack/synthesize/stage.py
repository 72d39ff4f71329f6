"""Stage 4, synthesize: every clean simulation → k experiment-like images by the trained DRIT."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vdwstack.core.images import normalize_unit
from vdwstack.core.io import open_image_dataset, write_image_dataset
from vdwstack.core.resample import resample
from vdwstack.core.settings import check_settings, setting
from vdwstack.core.torch_utils import resolve_device
from vdwstack.drit.data import load_style_references, random_crop
from vdwstack.drit.training import drit_autocast_dtype, load_translator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesizeSettings:
    """DRIT applied to every simulation (config block ``synthesize``)."""

    style_draws: int = setting(2, "experiment-like images per simulation (labels copied)", minimum=1)
    style_source: str = setting("references", "references (codes from the style images) | prior (N(0, I))",
                                enum=["references", "prior"])
    batch_size: int = setting(16, "images per generator call", minimum=1)
    device: str = setting("auto", "auto (cuda when visible) | cpu | cuda", enum=["auto", "cpu", "cuda"])
    mixed_precision: bool = setting(True, "translate in bf16 (DRIT's training precision) on CUDA or a CPU with "
                                          "native bf16 (~2× faster on the CPU; output within 0.6 % of the fp32 "
                                          "one's std)")


def synthesize_dataset(sim_zarr: str | Path, drit_dir: str | Path, style_sheet: str | Path, out_zarr: str | Path,
                       style_draws: int = SynthesizeSettings.style_draws,
                       style_source: str = SynthesizeSettings.style_source,
                       batch_size: int = SynthesizeSettings.batch_size, seed: int = 0,
                       device: str = SynthesizeSettings.device,
                       mixed_precision: bool = SynthesizeSettings.mixed_precision, progress: bool = True) -> None:
    """Translate each simulation `style_draws` times; labels are copied (atoms do not move).

    style_source: "references" (attribute codes encoded from random crops of the style
    references) or "prior" (codes drawn from N(0, I)).
    """
    check_settings(SynthesizeSettings(style_draws, style_source, batch_size, device, mixed_precision), "synthesize")
    dev = resolve_device(device)
    amp = drit_autocast_dtype(dev, mixed_precision)
    translator, card = load_translator(drit_dir, device=str(dev))
    root, labels = open_image_dataset(sim_zarr)
    p = float(root.attrs["pixel_size_A"])
    p_drit = float(card["input"]["pixel_size_A"])
    n, H, W = root["images"].shape
    # DRIT translates at the pixel size it learnt the style at; a dataset at another pixel size (e.g. a
    # twist dataset's wide field at 0.25 Å/px) goes there and back with the anti-aliased resampler.
    at_drit = _DritScale(p, p_drit, (H, W))
    Hc, Wc = at_drit.out_shape
    rng = np.random.default_rng(seed)
    codes = None
    if style_source == "references":
        sheet = pd.read_csv(style_sheet, sep="\t", dtype=str, comment="#").fillna("")
        # The pixel sizes DRIT was trained with (its card), not estimated again.
        known = {r["id"]: r for r in card["training"].get("style_references", [])}
        refs = load_style_references(sheet.to_dict("records"), root.attrs["material"][0], p_drit, known=known)
        crop = int(card["input"]["train_crop_px"])
        crops = np.stack([normalize_unit(random_crop(refs[rng.integers(len(refs))].image, crop, rng))
                          for _ in range(64)])[:, None]
        with torch.no_grad():
            codes, _ = translator.enc_a_B(torch.from_numpy(crops).to(dev))
    gen = torch.Generator(device="cpu").manual_seed(seed)

    table = labels.copy()
    table["material"] = root.attrs["material"][0]
    table["dataset"] = root.attrs.get("dataset", "")
    rep = table.loc[np.repeat(np.arange(n), style_draws)].reset_index(drop=True)
    rep["sample_id"] = [f"{sid}-s{j}" for sid in table["sample_id"] for j in range(style_draws)]
    rep["style_draw"] = np.tile(np.arange(style_draws), n)
    rep["height_px"], rep["width_px"] = Hc, Wc
    rep["pixel_size_A"] = p  # the dataset attribute, written once again by write_image_dataset

    spread = _DrawSpread(style_draws)

    def batches():
        order = np.repeat(np.arange(n), style_draws)
        with tqdm(total=len(order), desc="synthesize", unit="img", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                x = np.stack([normalize_unit(at_drit.there(root["images"][i])) for i in idx])[:, None]
                xt = torch.from_numpy(x).to(dev)
                with torch.no_grad(), torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    if codes is not None:
                        z = codes[torch.randint(len(codes), (len(idx),), generator=gen).to(dev)]
                        y = translator.translate(xt, z=z)
                    else:
                        y = translator.translate(xt, generator=gen)
                bar.update(len(idx))
                out = np.stack([at_drit.back(im) for im in y[:, 0].float().cpu().numpy()])
                spread.see(start, idx, out)
                yield start, out

    attrs = {"synthesized_from": str(sim_zarr), "drit": str(drit_dir), "drit_fingerprint": card["training"]["fingerprint"],
             "style_draws": style_draws, "style_source": style_source,
             "precision": str(amp or torch.float32).removeprefix("torch."),
             "intensity_unit": "experiment-like, normalized to [-1, 1]",
             "config_hash": root.attrs.get("config_hash"), "dataset": root.attrs.get("dataset", "")}
    write_image_dataset(out_zarr, rep, batches(), attrs)
    spread.record(out_zarr)


class _DrawSpread:
    """How much the style draws of one simulation differ: rms(draw j − draw 0) / std(draw 0) over the
    first simulations, stored as the dataset attribute ``style_draw_spread``, with a warning when the
    draws are near-copies: a DRIT whose generator ignores its attribute code (one style reference, a
    short training) makes those, and ``style_draws`` > 1 then costs time without adding variety."""

    simulations = 8  # enough for a mean, cheap to keep

    def __init__(self, style_draws: int):
        self.draws = style_draws
        self.first: dict[int, np.ndarray] = {}
        self.values: list[float] = []

    def see(self, start: int, idx: np.ndarray, out: np.ndarray) -> None:
        """Images `out` [B, H, W] at positions start… of the output, of simulations `idx` [B]."""
        for k, i in enumerate(int(i) for i in idx):
            if i >= self.simulations:
                continue
            if (start + k) % self.draws == 0:
                self.first[i] = out[k]
            else:
                d0 = self.first[i]
                self.values.append(float(np.sqrt(np.mean((out[k] - d0) ** 2)) / max(float(d0.std()), 1e-12)))

    def record(self, out_zarr: str | Path) -> None:
        if not self.values:
            return
        import zarr

        spread = float(np.mean(self.values))
        zarr.open_group(str(out_zarr), mode="r+").attrs["style_draw_spread"] = spread
        if spread < 0.02:
            log.warning("%s: the %d style draws of a simulation differ by %.1f %% of the image std (near-copies: "
                        "DRIT's generator ignores its attribute code); synthesize.style_draws: 1 gives the same "
                        "variety in 1/%d of the time", out_zarr, self.draws, 100 * spread, self.draws)


class _DritScale:
    """An image at the dataset's pixel size ↔ DRIT's input (a multiple of 4 px at DRIT's pixel size)."""

    def __init__(self, p_A: float, p_drit_A: float, shape: tuple[int, int]):
        self.p, self.q = p_A, p_drit_A
        self.same = abs(p_A - p_drit_A) <= 1e-9 * p_drit_A
        H, W = shape
        if self.same:
            self.drit_shape = (H // 4 * 4, W // 4 * 4)
            self.out_shape = self.drit_shape
        else:
            self.drit_shape = (int((H - 1) * p_A / p_drit_A) // 4 * 4, int((W - 1) * p_A / p_drit_A) // 4 * 4)
            self.out_shape = (int((self.drit_shape[0] - 1) * p_drit_A / p_A) + 1,
                              int((self.drit_shape[1] - 1) * p_drit_A / p_A) + 1)
            log.info("simulations at %.4f Å/px are translated at DRIT's %.4f Å/px (%d×%d px there)",
                     p_A, p_drit_A, *self.drit_shape)

    def there(self, image: np.ndarray) -> np.ndarray:
        if self.same:
            return np.asarray(image)[: self.drit_shape[0], : self.drit_shape[1]]
        return resample(np.asarray(image, np.float32), self.p, self.q, shape=self.drit_shape)

    def back(self, image: np.ndarray) -> np.ndarray:
        if self.same:
            return image
        return resample(image, self.q, self.p, shape=self.out_shape)
