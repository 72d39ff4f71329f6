"""What every PyTorch stage shares: device choice and loading checkpoints without unpickling code.

Imported only by the stages that run PyTorch (drit, synthesize, regress, infer): their conda env
has torch, the others' does not.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when visible, else the CPU; "cuda" without a GPU falls back to the CPU (warning)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        log.warning("device=cuda but no GPU is visible: using the CPU")
        return torch.device("cpu")
    return torch.device(name)


def load_weights_only(path: str | Path) -> dict:
    """torch.load restricted to tensors and plain containers; anything else is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused to load: not a plain weights file ({str(e).splitlines()[0]})") from None


def make_deterministic(enabled: bool) -> None:
    """Deterministic kernels (bit-identical training for the same seed and device), or back to
    PyTorch's defaults. cuBLAS needs its workspace setting for that on the GPU; ops that have no
    deterministic CUDA kernel (e.g. the backward of reflection padding) warn instead of failing."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = False if enabled else torch.backends.cudnn.benchmark


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast precision for `device`, or None for fp32: fp16 on CUDA; bf16 on a CPU with
    native bf16 arithmetic (avx512_bf16 or AMX), where oneDNN runs convolutions ~1.6× faster
    (benchmarks/regress.py). CPUs without it would emulate bf16 slower than fp32."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (avx512_bf16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, name, None)
        if check is not None and check():
            return True
    return False


def fused_adam_kwargs(device: torch.device) -> dict:
    """``{"fused": True}`` where this torch has the fused Adam/AdamW kernels for `device` (CPU and
    CUDA in torch ≥ 2.4), else ``{}``: one pass over the parameters instead of several — the
    ResNet-18 optimiser step on 2 cores 44 → 20 ms (8 % of a demo training step), same update
    up to rounding."""
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}
