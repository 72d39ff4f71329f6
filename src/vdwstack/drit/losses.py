"""Losses of the Trident-enhanced DRIT. Pure functions of tensors ([N, 1, H, W] images in [−1, 1])."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def lsgan(outputs: list[torch.Tensor], target: float) -> torch.Tensor:
    """Least-squares GAN loss summed over discriminator scales."""
    return sum(F.mse_loss(o, torch.full_like(o, target)) for o in outputs)


def kl_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)), mean over the batch."""
    return 0.5 * torch.mean(torch.sum(mu**2 + logvar.exp() - 1 - logvar, dim=1))


def mode_seeking(img1: torch.Tensor, img2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                 eps: float = 0.05) -> torch.Tensor:
    """Mode-seeking loss (Mao et al. 2019): large when different codes give the same image.

    Kept in the graph (not detached), so it trains the generator. ``eps`` bounds the loss at 1/eps:
    with MSGAN's 1e-5 the first iterations (a generator that still ignores z) give gradients five
    orders of magnitude above every other term.
    """
    ratio = torch.mean(torch.abs(img1 - img2)) / torch.mean(torch.abs(z1 - z2))
    return 1.0 / (ratio + eps)


def _gaussian_kernel(sigma_px: float, device, dtype) -> torch.Tensor:
    r = max(1, int(round(3 * sigma_px)))
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding."""
    if sigma_px <= 0:
        return x
    k = _gaussian_kernel(sigma_px, x.device, x.dtype)
    r = (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def _standardize(x: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(2, 3), keepdim=True)
    s = x.std(dim=(2, 3), keepdim=True) + 1e-6
    return (x - m) / s


def content_preservation(translation: torch.Tensor, source: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Enhancement 1: atoms stay where they are. L1 between blurred, standardized images, so
    contrast, noise and fine texture may change but the column pattern may not. Always fp32
    (under bf16 autocast too): the comparison is the label's guard."""
    with torch.autocast(translation.device.type, enabled=False):
        t, s = translation.float(), source.float()
        return F.l1_loss(_standardize(blur(t, sigma_px)), _standardize(blur(s, sigma_px)))


def lattice_consistency(translation: torch.Tensor, source: torch.Tensor, n_peaks: int = 24,
                        min_freq: float = 0.02) -> torch.Tensor:
    """Enhancement 2: Bragg peaks of the translation keep the positions and phases of the source.

    On a Hann-windowed FFT, the ``n_peaks`` strongest frequencies of the source (above
    ``min_freq`` cycles/px, i.e. the lattice's Bragg peaks) are compared as complex numbers after
    the best real gain: |F_t − s·F_s| / |F_s| over those peaks. A slip of the top layer changes
    these phases, so keeping them keeps the label. Always fp32 (FFTs have no bf16 kernels).
    """
    with torch.autocast(translation.device.type, enabled=False):
        return _lattice_consistency(translation.float(), source.float(), n_peaks, min_freq)


def _lattice_consistency(translation: torch.Tensor, source: torch.Tensor, n_peaks: int, min_freq: float) -> torch.Tensor:
    N, _, H, W = source.shape
    win = torch.outer(torch.hann_window(H, periodic=False, device=source.device, dtype=source.dtype),
                      torch.hann_window(W, periodic=False, device=source.device, dtype=source.dtype))
    fs = torch.fft.rfft2((source - source.mean(dim=(2, 3), keepdim=True)) * win)
    ft = torch.fft.rfft2((translation - translation.mean(dim=(2, 3), keepdim=True)) * win)
    qy = torch.fft.fftfreq(H, device=source.device).abs()[:, None]
    qx = torch.fft.rfftfreq(W, device=source.device)[None, :]
    band = (torch.sqrt(qx**2 + qy**2) >= min_freq).to(source.dtype)
    mag = (fs.abs() * band).flatten(1).detach()
    idx = mag.topk(min(n_peaks, mag.shape[1]), dim=1).indices
    s_pk = torch.gather(fs.flatten(1), 1, idx)
    t_pk = torch.gather(ft.flatten(1), 1, idx)
    gain = (torch.sum((t_pk * s_pk.conj()).real, dim=1, keepdim=True)
            / (torch.sum(s_pk.abs() ** 2, dim=1, keepdim=True) + 1e-12)).clamp(min=1e-3)
    # Relative error, bounded by ~1 for a translation unrelated to the source.
    err = torch.sum((t_pk - gain * s_pk).abs(), dim=1)
    return torch.mean(err / (torch.sum(t_pk.abs(), dim=1) + gain[:, 0] * torch.sum(s_pk.abs(), dim=1) + 1e-12))
