"""Reading experimental images: grey float32 arrays plus the pixel size when the file records it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_image(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Read a TIFF/PNG/JPEG image as grey float32 [H, W] and its pixel size in Å (or None).

    RGB(A) is converted to grey (luminance). Raises ValueError naming the file for unreadable,
    non-finite, constant or tiny images.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    suffix = path.suffix.lower()
    pixel_size_A = None
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            from vdwstack.io import read_tiff_pixel_size_A

            arr = tifffile.imread(path)
            pixel_size_A = read_tiff_pixel_size_A(path)
        elif suffix in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I", "I;16", "F") else im)
        else:
            raise ValueError(f"{path}: unsupported image format {suffix!r} (use .tif, .png or .jpg)")
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D grey or RGB image, got shape {arr.shape}")
    if min(arr.shape) < 32:
        raise ValueError(f"{path}: image too small ({arr.shape[0]}x{arr.shape[1]} px, need ≥ 32)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: image contains NaN or infinite values")
    if arr.std() == 0:
        raise ValueError(f"{path}: image is constant")
    return arr.astype(np.float32), pixel_size_A


def normalize_unit(image: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map robust percentiles to [−1, 1] (clipped): insensitive to hot pixels and dark outliers."""
    lo, hi = np.percentile(image, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1e-12
    return np.clip(2 * (image - lo) / (hi - lo) - 1, -1, 1).astype(np.float32)
