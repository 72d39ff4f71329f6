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
