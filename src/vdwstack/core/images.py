"""Reading experimental images: grey float32 arrays plus the pixel size when the file records it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MICROSCOPE_FORMATS = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd",
                      ".ser": "tia", ".mrc": "mrc"}
UNIT_TO_A = {"Å": 1.0, "A": 1.0, "angstrom": 1.0, "nm": 10.0, "pm": 0.01, "µm": 1e4, "um": 1e4, "m": 1e10}
FORMATS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", *MICROSCOPE_FORMATS)
# Checked from the file header before any pixel is decoded: a small compressed file that claims a
# huge image (a decompression bomb) is refused instead of filling memory. 2**28 px = 16384², 1 GiB
# as float32, above any STEM frame.
MAX_IMAGE_PIXELS = 2**28


def _check_pixels(path: Path, shape, max_pixels: int) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > max_pixels:
        raise ValueError(f"{path}: header declares {' x '.join(map(str, shape))} = {n:,} values, over the "
                         f"limit of {max_pixels:,}; refusing to decode (possible decompression bomb)")


def _check_microscope_header(path: Path, max_pixels: int) -> None:
    """Sizes declared by MRC headers and EMD (HDF5) datasets, checked before any data is read.

    EMD datasets may be compressed, so a small file can declare a huge array (a decompression
    bomb); MRC declares nx, ny, nz in its first 12 bytes. DM3/DM4 and SER are uncompressed: their
    readers cannot produce more data than the file holds.
    """
    suffix = path.suffix.lower()
    if suffix == ".mrc":
        with open(path, "rb") as f:
            head = f.read(12)
        if len(head) == 12:
            dims = np.frombuffer(head, "<i4")
            if (dims < 0).any():
                dims = np.frombuffer(head, ">i4")
            if (dims > 0).all():
                _check_pixels(path, tuple(int(d) for d in dims), max_pixels)
    elif suffix == ".emd":
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError:
            return  # not HDF5: rosettasciio reports it
        with f:
            shapes = []
            f.visititems(lambda _, obj: shapes.append(obj.shape) if isinstance(obj, h5py.Dataset) else None)
        for shape in shapes:
            _check_pixels(path, shape, max_pixels)


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


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, float | None]:
    """Read an image as grey float32 [H, W] and its pixel size in Å (None when not recorded).

    TIFF (pixel size from its resolution tags), PNG/JPEG/BMP (Pillow), and DM3/DM4, EMD, SER, MRC
    (rosettasciio, pixel size from the calibrated axes). RGB(A) is converted to grey (luminance).
    Raises ValueError naming the file for unreadable, truncated, non-finite, constant or tiny images,
    and, before decoding, for TIFF/PNG/JPEG/BMP/MRC headers or EMD datasets declaring more than
    `max_pixels` values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    suffix = path.suffix.lower()
    pixel_size_A = None
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            from vdwstack.core.io import read_tiff_pixel_size_A

            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise ValueError(f"{path}: TIFF holds no image")
                _check_pixels(path, tif.series[0].shape, max_pixels)
                arr = tif.series[0].asarray()
            pixel_size_A = read_tiff_pixel_size_A(path)
        elif suffix in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(path) as im:
                _check_pixels(path, (im.size[1], im.size[0], len(im.getbands())), max_pixels)
                im.load()
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I", "I;16", "F") else im)
        elif suffix in MICROSCOPE_FORMATS:
            _check_microscope_header(path, max_pixels)
            arr, pixel_size_A = _read_microscope_file(path)
        else:
            raise ValueError(f"{path}: unsupported image format {suffix!r} (use one of {', '.join(FORMATS)})")
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    except Exception as e:  # Pillow's own DecompressionBombError, tifffile's TiffFileError, ...
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
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
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path}: image values exceed the float32 range (|value| > {np.finfo(np.float32).max:.3g})")
    # Denormal-only contrast would vanish in the float32 arithmetic downstream: as good as constant.
    if out.std() == 0 or np.ptp(out) < np.finfo(np.float32).tiny:
        raise ValueError(f"{path}: image is constant (no contrast above float32 precision)")
    return out, pixel_size_A


def normalize_unit(image: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map robust percentiles to [−1, 1] (clipped): insensitive to hot pixels and dark outliers."""
    lo, hi = np.percentile(image, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1e-12
    return np.clip(2 * (image - lo) / (hi - lo) - 1, -1, 1).astype(np.float32)
