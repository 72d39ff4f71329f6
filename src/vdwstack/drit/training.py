"""Training of the Trident-enhanced DRIT: loop, checkpoint/resume, logs, sample grids, export."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vdwstack.core.allocator import retain_freed_memory
from vdwstack.core.io import open_loss_log, publish_loss_log
from vdwstack.core.settings import setting, settings_from_mapping
from vdwstack.core.torch_utils import (
    autocast_dtype,
    fused_adam_kwargs,
    load_weights_only,
    make_deterministic,
    resolve_device,
)
from vdwstack.drit.data import DomainSampler
from vdwstack.drit.losses import (
    content_preservation,
    kl_gaussian,
    lattice_consistency,
    lsgan,
    mode_seeking,
)
from vdwstack.drit.networks import Drit, DritArchitecture, Translator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the DRIT++ losses and of the two content enhancements (config ``drit.weights``)."""

    adversarial: float = setting(1.0, "domain discriminators (LSGAN)", minimum=0)
    content_adversarial: float = setting(1.0, "content discriminator", minimum=0)
    cross_cycle: float = setting(10.0, "cross-cycle reconstruction (L1)", minimum=0)
    self_recon: float = setting(10.0, "self reconstruction (L1)", minimum=0)
    kl_attribute: float = setting(0.01, "KL of the attribute codes", minimum=0)
    content_l2: float = setting(0.01, "L2 of the content codes", minimum=0)
    latent_regression: float = setting(10.0, "random code recovered from its image (L1, trained)", minimum=0)
    mode_seeking: float = setting(1.0, "mode-seeking (diversity, trained)", minimum=0)
    content_preservation: float = setting(10.0, "enhancement 1: spatial content", minimum=0)
    lattice_consistency: float = setting(5.0, "enhancement 2: Bragg peak positions and phases", minimum=0)


@dataclass(frozen=True)
class DritConfig:
    """DRIT training settings (config block ``drit``). The three enhancements each have a switch (ablations)."""

    iterations: int = setting(400, "training iterations", minimum=1)
    batch_size: int = setting(2, "images per domain and iteration", minimum=1)
    crop_px: int = setting(96, "training crop side (px)", minimum=32, multipleOf=4)
    lr: float = setting(1e-4, "Adam learning rate", exclusiveMinimum=0)
    lr_decay_start: int | None = setting(None, "linear decay to 0 from this iteration (paper: half-way; null: none)",
                                         minimum=0)
    betas: tuple[float, float] = setting((0.5, 0.999), "Adam betas")
    checkpoint_every: int = setting(100, "iterations between checkpoints (resume after a kill)", minimum=1)
    sample_every: int = setting(100, "iterations between sample grids", minimum=1)
    seed: int = setting(0, "seed of weights and data stream", minimum=0)
    deterministic: bool = setting(False, "bit-identical weights for the same seed and device "
                                         "(deterministic kernels; slower on GPU)")
    device: str = setting("auto", "auto (cuda when visible) | cpu | cuda", enum=["auto", "cpu", "cuda"])
    content_preservation: bool = setting(True, "enhancement 1: spatial content loss")
    lattice_consistency: bool = setting(True, "enhancement 2: Bragg peak positions and phases kept")
    few_image_augmentation: bool = setting(True, "enhancement 3: rotations, scale jitter, matched pixel size")
    content_blur_A: float = setting(0.3, "σ of the blur before the content comparison (Å)", minimum=0)
    mixed_precision: bool = setting(False, "bf16 autocast of the networks (a CPU with native bf16, or CUDA); the "
                                           "content and lattice losses stay fp32")
    channels_last: bool = setting(False, "channels-last memory layout of the networks and batches")
    architecture: DritArchitecture = setting(factory=DritArchitecture, doc="network sizes")
    weights: LossWeights = setting(factory=LossWeights, doc="loss weights")

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> DritConfig:
        """From the config block without its routing keys (``dataset``, ``eval_images``)."""
        return settings_from_mapping(cls, m, "drit", ignore=("dataset", "eval_images"))

    def to_dict(self) -> dict:
        return asdict(self)


_bce = torch.nn.functional.binary_cross_entropy_with_logits


def drit_autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """DRIT's autocast precision on `device`, or None for fp32: bf16 on CUDA and on a CPU with native
    bf16 — not fp16, which would need loss scaling for three optimisers. Training and translation
    (`synthesize`) use the same, so a translator runs in the precision it learnt in."""
    if enabled and (device.type == "cuda" or autocast_dtype(device, True) == torch.bfloat16):
        return torch.bfloat16
    return None


class DritTrainer:
    """Holds the networks, optimizers and the iteration counter."""

    def __init__(self, cfg: DritConfig, pixel_size_A: float, device: torch.device | None = None):
        self.cfg = cfg
        self.pixel_size_A = pixel_size_A
        self.device = device or resolve_device(cfg.device)
        if self.device.type == "cpu":
            retain_freed_memory()  # paper-scale iterations: 1.5× faster (vdwstack.core.allocator)
        make_deterministic(cfg.deterministic)
        torch.manual_seed(cfg.seed)
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = Drit(cfg.architecture).to(self.device, memory_format=self.fmt)
        self.amp = drit_autocast_dtype(self.device, cfg.mixed_precision and not cfg.deterministic) is not None
        fused = fused_adam_kwargs(self.device)
        self.opt_g = torch.optim.Adam(self.model.generator_parameters(), lr=cfg.lr, betas=cfg.betas, **fused)
        self.opt_d = torch.optim.Adam(self.model.discriminator_parameters(), lr=cfg.lr, betas=cfg.betas, **fused)
        self.opt_c = torch.optim.Adam(self.model.dis_c.parameters(), lr=cfg.lr, betas=cfg.betas, **fused)
        self.iteration = 0
        self.blur_px = cfg.content_blur_A / pixel_size_A

    def _lr_factor(self) -> float:
        start = self.cfg.lr_decay_start
        if start is None or self.iteration < start:
            return 1.0
        return max(0.0, 1.0 - (self.iteration - start) / max(1, self.cfg.iterations - start))

    def step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """One DRIT++ update: discriminators, content discriminator, then encoders + generators.
        The phases carry profiler labels (``drit.*``: benchmarks/drit.py --profile)."""
        for opt in (self.opt_g, self.opt_d, self.opt_c):
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr * self._lr_factor()
        a, b = a.contiguous(memory_format=self.fmt), b.contiguous(memory_format=self.fmt)
        cast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        with torch.profiler.record_function("drit.forward"), cast:
            f = self._forward(a, b)
        with torch.profiler.record_function("drit.discriminator_steps"), cast:
            loss_d, loss_c = self._discriminator_steps(f)
        with torch.profiler.record_function("drit.generator_losses"), cast:
            losses = {k: v.float() for k, v in self._generator_losses(f).items()}
            total = sum(getattr(self.cfg.weights, k) * v for k, v in losses.items())
        with torch.profiler.record_function("drit.generator_backward"):
            self.opt_g.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(list(self.model.generator_parameters()), 10.0)
            self.opt_g.step()
        self.iteration += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out.update(total=float(total.detach()), discriminator=float(loss_d.detach()), content_discriminator=float(loss_c.detach()))
        return out

    def _forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encodings and every translation one update needs (A: simulations, B: experiments)."""
        m, nz, n = self.model, self.cfg.architecture.nz, a.shape[0]
        f = {"a": a, "b": b}
        f["c_a"], f["c_b"] = m.enc_c(a, "A"), m.enc_c(b, "B")
        f["mu_a"], f["lv_a"] = m.enc_a_A(a)
        f["mu_b"], f["lv_b"] = m.enc_a_B(b)
        z_a = f["mu_a"] + torch.randn_like(f["mu_a"]) * torch.exp(0.5 * f["lv_a"])
        z_b = f["mu_b"] + torch.randn_like(f["mu_b"]) * torch.exp(0.5 * f["lv_b"])
        f["z_r1"], f["z_r2"] = torch.randn(n, nz, device=a.device), torch.randn(n, nz, device=a.device)
        # Each generator runs once on the four (content, code) pairs it needs, stacked along the
        # batch: every layer normalises per image (InstanceNorm), so this is the same arithmetic
        # as four calls, but a batch of 4n keeps the CPU's convolution kernels busy where n = 2
        # does not (the reference DRIT++ batches its generator calls the same way).
        # gen_A: B content in A style (fake_a), A's own reconstruction, two random A styles.
        f["fake_a"], f["rec_a"], f["fake_a_r1"], f["fake_a_r2"] = m.gen_A(
            torch.cat([f["c_b"], f["c_a"], f["c_b"], f["c_b"]]),
            torch.cat([z_a, z_a, f["z_r1"], f["z_r2"]])).split(n)
        # gen_B: A content (simulation) in experimental style (fake_b), B's reconstruction, random styles.
        f["fake_b"], f["rec_b"], f["fake_b_r1"], f["fake_b_r2"] = m.gen_B(
            torch.cat([f["c_a"], f["c_b"], f["c_a"], f["c_a"]]),
            torch.cat([z_b, z_b, f["z_r1"], f["z_r2"]])).split(n)
        return f

    def _discriminator_steps(self, f: dict) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        self.opt_d.zero_grad(set_to_none=True)
        real_a, fake_a, fake_a_r1 = _per_part(m.dis_A(torch.cat([f["a"], f["fake_a"].detach(), f["fake_a_r1"].detach()])), 3)
        real_b, fake_b, fake_b_r1 = _per_part(m.dis_B(torch.cat([f["b"], f["fake_b"].detach(), f["fake_b_r1"].detach()])), 3)
        loss_d = (lsgan(real_a, 1) + 0.5 * lsgan(fake_a, 0) + 0.5 * lsgan(fake_a_r1, 0)
                  + lsgan(real_b, 1) + 0.5 * lsgan(fake_b, 0) + 0.5 * lsgan(fake_b_r1, 0))
        loss_d.backward()
        self.opt_d.step()
        self.opt_c.zero_grad(set_to_none=True)
        la, lb = m.dis_c(f["c_a"].detach()), m.dis_c(f["c_b"].detach())
        loss_c = _bce(la, torch.zeros_like(la)) + _bce(lb, torch.ones_like(lb))
        loss_c.backward()
        torch.nn.utils.clip_grad_norm_(m.dis_c.parameters(), 5.0)
        self.opt_c.step()
        return loss_d, loss_c

    def _generator_losses(self, f: dict) -> dict[str, torch.Tensor]:
        m, cfg, l1 = self.model, self.cfg, torch.nn.functional.l1_loss
        a, b, fake_a, fake_b = f["a"], f["b"], f["fake_a"], f["fake_b"]
        losses: dict[str, torch.Tensor] = {}
        d_a, d_a_r1 = _per_part(m.dis_A(torch.cat([fake_a, f["fake_a_r1"]])), 2)
        d_b, d_b_r1 = _per_part(m.dis_B(torch.cat([fake_b, f["fake_b_r1"]])), 2)
        losses["adversarial"] = lsgan(d_a, 1) + lsgan(d_b, 1) + lsgan(d_a_r1, 1) + lsgan(d_b_r1, 1)
        la, lb = m.dis_c(f["c_a"]), m.dis_c(f["c_b"])
        losses["content_adversarial"] = _bce(la, torch.full_like(la, 0.5)) + _bce(lb, torch.full_like(lb, 0.5))
        losses["self_recon"] = l1(f["rec_a"], a) + l1(f["rec_b"], b)
        # Cross-cycle: translate, re-encode, swap back.
        c_fa, c_fb = m.enc_c(fake_a, "A"), m.enc_c(fake_b, "B")
        # One attribute-encoder pass per domain serves the cross-cycle and the latent regression.
        (mu_fa, mu_ra), (lv_fa, _) = (t.split(len(a)) for t in m.enc_a_A(torch.cat([fake_a, f["fake_a_r1"]])))
        (mu_fb, mu_rb), (lv_fb, _) = (t.split(len(a)) for t in m.enc_a_B(torch.cat([fake_b, f["fake_b_r1"]])))
        z_fa = mu_fa + torch.randn_like(mu_fa) * torch.exp(0.5 * lv_fa)
        z_fb = mu_fb + torch.randn_like(mu_fb) * torch.exp(0.5 * lv_fb)
        losses["cross_cycle"] = l1(m.gen_A(c_fb, z_fa), a) + l1(m.gen_B(c_fa, z_fb), b)
        losses["kl_attribute"] = kl_gaussian(f["mu_a"], f["lv_a"]) + kl_gaussian(f["mu_b"], f["lv_b"])
        losses["content_l2"] = torch.mean(f["c_a"] ** 2) + torch.mean(f["c_b"] ** 2)
        # Latent regression: a random code must be recoverable from the image it made (not detached).
        losses["latent_regression"] = l1(mu_ra, f["z_r1"]) + l1(mu_rb, f["z_r1"])
        losses["mode_seeking"] = (mode_seeking(f["fake_a_r1"], f["fake_a_r2"], f["z_r1"], f["z_r2"])
                                  + mode_seeking(f["fake_b_r1"], f["fake_b_r2"], f["z_r1"], f["z_r2"]))
        if cfg.content_preservation:
            losses["content_preservation"] = (content_preservation(fake_b, a, self.blur_px)
                                              + content_preservation(f["fake_b_r1"], a, self.blur_px))
        if cfg.lattice_consistency:
            losses["lattice_consistency"] = lattice_consistency(fake_b, a) + lattice_consistency(f["fake_b_r1"], a)
        return losses

    # ---- checkpoints ----
    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_c": self.opt_c.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(self.cfg.to_dict()),
        }

    def save_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)  # never leave a half-written checkpoint

    def load_checkpoint(self, path: str | Path) -> None:
        state = load_weights_only(path)
        if json.loads(state["config"])["architecture"] != self.cfg.architecture.to_dict():
            raise ValueError(f"{path}: checkpoint architecture differs from drit.architecture")
        self.model.load_state_dict(state["model"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_c.load_state_dict(state["opt_c"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration = int(state["iteration"])


def _per_part(outputs: list[torch.Tensor], parts: int) -> list[list[torch.Tensor]]:
    """A multi-scale discriminator's outputs on `parts` equal batches stacked together → per batch."""
    return [list(t) for t in zip(*(o.chunk(parts) for o in outputs))]


def _to_tensor(x: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def train(sampler: DomainSampler, cfg: DritConfig, out_dir: str | Path, pixel_size_A: float,
          progress: bool = True, stop_after: int | None = None) -> DritTrainer:
    """Train (or resume from ``out_dir/checkpoints/last.pt``) and write logs, grids and checkpoints.

    ``stop_after`` ends the run early after that many iterations of this call (tests, interruption).
    """
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    trainer = DritTrainer(cfg, pixel_size_A)
    ckpt = out / "checkpoints" / "last.pt"
    if ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log.info("resumed from %s at iteration %d", ckpt, trainer.iteration)
    writer = None
    fh = open_loss_log(out, trainer.iteration)
    t_start, done_here = time.perf_counter(), 0
    try:
        with tqdm(total=cfg.iterations, initial=trainer.iteration, desc="drit", unit="it", disable=not progress) as bar:
            while trainer.iteration < cfg.iterations:
                if stop_after is not None and done_here >= stop_after:
                    break
                rng = np.random.default_rng([cfg.seed, trainer.iteration])  # resumable data stream
                a, b, _ = sampler.sample(cfg.batch_size, rng)
                losses = trainer.step(_to_tensor(a, trainer.device), _to_tensor(b, trainer.device))
                done_here += 1
                row = {"iteration": trainer.iteration, "seconds": time.perf_counter() - t_start, **losses}
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
                    if fh.tell() == 0:
                        writer.writeheader()
                writer.writerow(row)
                bar.update(1)
                bar.set_postfix(total=f"{losses['total']:.2f}")
                it = trainer.iteration
                if it % cfg.sample_every == 0 or it == cfg.iterations:
                    save_sample_grid(trainer.model, sampler, out / "samples" / f"iter_{it:06d}.png", cfg.seed)
                if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
                    fh.flush()
                    trainer.save_checkpoint(ckpt)
    finally:
        fh.close()
    publish_loss_log(out)
    return trainer


@torch.no_grad()
def save_sample_grid(model: Drit, sampler: DomainSampler, path: str | Path, seed: int, n: int = 4) -> None:
    """PNG grid: rows = samples; columns = simulation | translation | experiment crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([seed, 999_999])
    a, b, _ = sampler.sample(n, rng)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    t = model.translate(_to_tensor(a, dev), style=_to_tensor(b, dev)).cpu().numpy()
    model.train(was_training)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n))
    for i in range(n):
        for j, (img, title) in enumerate(((a[i, 0], "simulation"), (t[i, 0], "translation"), (b[i, 0], "experiment"))):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_translator(model: Drit, out_dir: str | Path, card: Mapping) -> None:
    """Write generator.safetensors (E_c^A, E_a^B, G_B) and card.json."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    tr = Translator(model.arch)
    tr.enc_c.load_state_dict(model.enc_c.state_dict())
    tr.enc_a_B.load_state_dict(model.enc_a_B.state_dict())
    tr.gen_B.load_state_dict(model.gen_B.state_dict())
    state = {k: v.detach().cpu().contiguous() for k, v in tr.state_dict().items()}
    save_file(state, str(out / "generator.safetensors"))
    (out / "card.json").write_text(json.dumps({"architecture": model.arch.to_dict(), **dict(card)}, indent=2, default=str))


def load_translator(model_dir: str | Path, device: str = "cpu") -> tuple[Translator, dict]:
    """Load a translator written by :func:`export_translator` (safetensors: no pickles)."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    tr = Translator(DritArchitecture(**card["architecture"]))
    tr.load_state_dict(load_file(str(model_dir / "generator.safetensors"), device=device))
    tr.eval()
    return tr.to(device), card
