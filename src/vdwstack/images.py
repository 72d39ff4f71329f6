"""Reading experimental images: grey float32 arrays plus the pixel size when the file records it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


MICROSCOPE_FORMATS = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd",
                      ".ser": "tia", ".mrc": "mrc"}
UNIT_TO_A = {"Å": 1.0, "A": 1.0, "angstrom": 1.0, "nm": 10.0, "pm": 0.01, "µm": 1e4, "um": 1e4, "m": 1e10}
FORMATS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", *MICROSCOPE_FORMATS)


def _read_microscope_file(path: Path) -> tuple[np.ndarray, float | None]:
    """DM3/DM4, EMD, SER and MRC through rosettasciio: the first 2-D signal and its x-axis scale."""
    import importlib

    reader = importlib.import_module(f"rsciio.{MICROSCOPE_FORMATS[path.suffix.lower()]}").file_reader
    try:
        signals = reader(str(path))
    except Exception as e:  # rosettasciio raises many types for damaged files
        raise ValueError(f"{path}: cannot read microscope file ({type(e).__name__}: {e})") from None
    for sig in signals:
        data = np.asarray(sig["data"])
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            continue
        axes = [a for a in sig.get("axes", []) if a.get("navigate") is not True]
        p = None
        if axes:
            ax = axes[-1]
            factor = UNIT_TO_A.get(str(ax.get("units", "")).strip())
            if factor is not None and float(ax.get("scale", 0)) > 0:
                p = float(ax["scale"]) * factor
        return data, p
    raise ValueError(f"{path}: no 2-D image in the file")


def read_image(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Read an image as grey float32 [H, W] and its pixel size in Å (None when not recorded).

    TIFF (pixel size from its resolution tags), PNG/JPEG/BMP (Pillow), and DM3/DM4, EMD, SER, MRC
    (rosettasciio, pixel size from the calibrated axes). RGB(A) is converted to grey (luminance).
    Raises ValueError naming the file for unreadable, truncated, non-finite, constant or tiny images.
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
        elif suffix in MICROSCOPE_FORMATS:
            arr, pixel_size_A = _read_microscope_file(path)
        else:
            raise ValueError(f"{path}: unsupported image format {suffix!r} (use one of {', '.join(FORMATS)})")
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    if np.iscomplexobj(arr):
        raise ValueError(f"{path}: complex-valued data is not an image")
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
