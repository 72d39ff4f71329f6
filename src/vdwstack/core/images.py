"""Reading experimental images: grey float32 arrays, the pixel size when the file records it, and
which of the file's signals was read.

Microscope formats and TIFF go through rosettasciio: TIFF (ImageJ/Fiji, FEI/Thermo, Zeiss, TVIPS,
Olympus, JEOL and DigitalMicrograph calibrations), DM3/DM4, EMD (Velox and Berkeley), SER, MRC,
HyperSpy's ``.hspy`` (HDF5) and ``.zspy`` (a Zarr directory or zip store). PNG/JPEG/BMP go through
Pillow and carry no calibration.

Calibration: the pixel size (Å/px) is the x axis' scale times its unit. Units are read case-
insensitively (Å, A, Angstrom(s), nm, pm, µm in either spelling of µ, um, micron, mm, m, and the
spelled-out metre names); an axis without a unit or in pixels ('', '<undefined>', 'px', 'pixel')
is not calibrated (pixel size None: the user's value or the Bragg-spot estimate then applies); any
other unit on the image's axes ('1/nm' of a diffraction pattern, 'eV', a typo) is refused with a
ValueError naming the file and the unit, because guessing a length there would silently give a
wrong pixel size. rosettasciio reads an ImageJ TIFF's scale but keeps only the unit 'micron', so
ImageJ's own ``unit=`` entry completes it; a TIFF with no recognised calibration falls back to its
resolution tags (:func:`vdwstack.core.io.read_tiff_pixel_size_A`).

Files with several signals (a Velox EMD with HAADF, DF4 and BF; an .hspy or Berkeley EMD with
several groups): the automatic choice is the 2-D image whose title contains 'HAADF', else one
whose title contains 'ADF' or 'DF' but not 'BF' (case-insensitive, first in file order); a file
with a single image gives it whatever its title; several untitled images (TIFF series) give the
first, as before. Otherwise ``signal=`` names one: a title (case-insensitive exact match) or the
index, as a string, of the signal among those the reader returns (counting from 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdwstack.core.calibration import UNIT_TO_A, axes_pixel_size_A, unit_to_A  # noqa: F401 - public here too
from vdwstack.core.signals import as_image, choose_signal, signal_title  # noqa: F401

log = logging.getLogger(__name__)

# Suffix → rosettasciio plugin.
RSCIIO_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph",
                  ".emd": "emd", ".ser": "tia", ".mrc": "mrc", ".hspy": "hspy", ".zspy": "zspy"}
MICROSCOPE_FORMATS = {k: v for k, v in RSCIIO_FORMATS.items() if v != "tiff"}
PILLOW_FORMATS = (".png", ".jpg", ".jpeg", ".bmp")
FORMATS = (".tif", ".tiff", *PILLOW_FORMATS, *MICROSCOPE_FORMATS)
# Formats whose "file" may be a directory (a Zarr directory store).
DIRECTORY_FORMATS = (".zspy",)

# Checked from the file header before any pixel is decoded: a small compressed file that claims a
# huge image (a decompression bomb) is refused instead of filling memory. 2**28 px = 16384², 1 GiB
# as float32, above any STEM frame.
MAX_IMAGE_PIXELS = 2**28


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One image as read from a file.

    data: grey float32 [H, W], indexed [row, col] = [y, x]. pixel_size_A: the file's calibration in
    Å/px (None when the file records none). signal: title of the signal read (None for formats
    without titles or an untitled signal). calibration: where the pixel size came from ('imagej',
    'fei', 'zeiss', 'tvips', 'olympus', 'jeol', 'digitalmicrograph' for TIFF flavours, 'resolution
    tags' for a plain TIFF, 'axes' for the calibrated axes of DM/EMD/SER/MRC/hspy/zspy; None when
    pixel_size_A is None). n_signals: how many signals the file holds (1 for PNG/JPEG/BMP).
    """

    data: np.ndarray = field(repr=False)
    pixel_size_A: float | None = None
    signal: str | None = None
    calibration: str | None = None
    n_signals: int = 1


# --- header checks -------------------------------------------------------------------------------
def _check_pixels(path: Path, shape, max_pixels: int) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > max_pixels:
        raise ValueError(f"{path}: header declares {' x '.join(map(str, shape))} = {n:,} values, over the "
                         f"limit of {max_pixels:,}; refusing to decode (possible decompression bomb)")


def _hdf5_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of every dataset of an HDF5 file (EMD, hspy); [] when it is not HDF5 (the reader
    then reports it)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        return []
    shapes: list[tuple[int, ...]] = []
    with f:
        f.visititems(lambda _, obj: shapes.append(obj.shape) if isinstance(obj, h5py.Dataset) else None)
    return [s for s in shapes if s is not None]


def _zarr_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of every array of a Zarr store (a directory, or a zip file as rosettasciio accepts)."""
    import zipfile

    import zarr

    store = zarr.storage.ZipStore(path, mode="r") if path.is_file() and zipfile.is_zipfile(path) else str(path)
    try:
        root = zarr.open(store, mode="r")
        if isinstance(root, zarr.Array):
            return [tuple(root.shape)]
        return [tuple(obj.shape) for _, obj in root.members(max_depth=None) if isinstance(obj, zarr.Array)]
    finally:
        if not isinstance(store, str):
            store.close()


def _check_microscope_header(path: Path, max_pixels: int) -> None:
    """Sizes declared by MRC headers, HDF5 datasets (EMD, hspy) and Zarr arrays (zspy), checked
    before any data is read.

    EMD, hspy and zspy arrays may be compressed, so a small file can declare a huge array (a
    decompression bomb); MRC declares nx, ny, nz in its first 12 bytes. DM3/DM4 and SER are
    uncompressed: their readers cannot produce more data than the file holds.
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
    elif suffix in (".emd", ".hspy"):
        for shape in _hdf5_shapes(path):
            _check_pixels(path, shape, max_pixels)
    elif suffix == ".zspy":
        for shape in _zarr_shapes(path):
            _check_pixels(path, shape, max_pixels)


# --- units and calibration -----------------------------------------------------------------------
# --- readers -------------------------------------------------------------------------------------
def _tiff_header(path: Path, max_pixels: int) -> dict:
    """What the TIFF's header says before any pixel is decoded: the sizes of every series
    (checked against `max_pixels`), its flavour and ImageJ's unit and resolution."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError(f"{path}: TIFF holds no image")
        for series in tif.series:
            _check_pixels(path, series.shape, max_pixels)
        page = tif.pages[0]
        flags = set(getattr(tif, "flags", ()))
        imagej = dict(tif.imagej_metadata or {}) if tif.is_imagej else None
        resolution = page.tags["XResolution"].value if "XResolution" in page.tags else None
        dm = bool({t.code for t in page.tags} & {65003, 65004, 65009, 65010})  # Gatan's private tags
        # rosettasciio's own order: the first flavour that matches gives the axes.
        flavour = ("fei" if "fei" in flags else "zeiss" if "sem" in flags else "tvips" if "tvips" in flags
                   else "olympus" if page.is_sis else "jeol" if page.tags.valueof("Make") == "JEOL Ltd."
                   else "imagej" if imagej is not None else "digitalmicrograph" if dm else None)
    return {"flavour": flavour, "imagej": imagej, "resolution": resolution}


def _imagej_pixel_size_A(path: Path, header: dict) -> float | None:
    """ImageJ: `resolution` pixels per `unit` of its description ('pixel' or none: uncalibrated)."""
    meta, res = header["imagej"], header["resolution"]
    if meta is None or res is None:
        return None
    factor = unit_to_A(meta.get("unit"), path)
    num, den = res
    if factor is None or not num > 0 or not den > 0:
        return None
    return factor * den / num


def _read_rsciio(path: Path, signal: str | None, max_pixels: int) -> LoadedImage:
    """A TIFF or microscope file through rosettasciio: the chosen signal and its calibration."""
    import importlib

    suffix = path.suffix.lower()
    plugin = RSCIIO_FORMATS[suffix]
    header = _tiff_header(path, max_pixels) if plugin == "tiff" else None
    if header is None:
        _check_microscope_header(path, max_pixels)
    reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    # Velox EMD: the images only (EDS spectrum images are large, slow and need `sparse`).
    kwargs = {"select_type": "images"} if plugin == "emd" else {}
    try:
        signals = list(reader(str(path), **kwargs))
    except Exception as e:  # rosettasciio raises many types for damaged files
        if plugin != "tiff":
            raise ValueError(f"{path}: cannot read microscope file ({type(e).__name__}: {e})") from None
        # A TIFF that tifffile reads but rosettasciio's metadata parsing trips on (a missing tag):
        # its first series, calibrated by ImageJ's unit or the resolution tags below.
        log.warning("%s: rosettasciio cannot read this TIFF (%s: %s); reading it with tifffile",
                    path, type(e).__name__, e)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            signals = [{"data": tif.series[0].asarray(), "axes": [], "metadata": {}}]
    if not signals:
        raise ValueError(f"{path}: no signal in the file")
    k = choose_signal(path, signals, signal)
    chosen = signals[k]
    data = as_image(chosen["data"])
    p = axes_pixel_size_A(path, chosen.get("axes", []))
    calibration = ("axes" if plugin != "tiff" else header["flavour"] or "tiff axes") if p is not None else None
    if plugin == "tiff" and p is None:
        # rosettasciio keeps ImageJ's scale but only the unit 'micron': ImageJ's own unit completes it.
        p = _imagej_pixel_size_A(path, header)
        calibration = "imagej" if p is not None else None
        if p is None:
            from vdwstack.core.io import read_tiff_pixel_size_A

            p = read_tiff_pixel_size_A(path)
            calibration = "resolution tags" if p is not None else None
    return LoadedImage(data, p, signal_title(chosen), calibration, len(signals))


def _read_pillow(path: Path, signal: str | None, max_pixels: int) -> LoadedImage:
    from PIL import Image

    if signal is not None and str(signal).strip() not in ("", "0"):
        raise ValueError(f"{path}: no signal {str(signal).strip()!r} in the file; it holds 1: 0: None "
                         f"(name one by title or index)")
    with Image.open(path) as im:
        _check_pixels(path, (im.size[1], im.size[0], len(im.getbands())), max_pixels)
        im.load()
        arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I", "I;16", "F") else im)
    return LoadedImage(arr, None)


def load_image(path: str | Path, signal: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> LoadedImage:
    """Read an image file: grey float32 [H, W], the file's pixel size (Å/px or None) and which
    signal was read.

    Formats, calibration and the choice among several signals: see the module docstring.
    signal: a title or index (as a string) of the signal to read; None or '' chooses the HAADF/ADF
    image. RGB(A) is converted to grey (luminance). Raises ValueError naming the file for
    unreadable, truncated, non-finite, constant or tiny images, an unknown `signal` (listing the
    titles), an unknown axis unit, and, before decoding, for TIFF/PNG/JPEG/BMP/MRC headers, EMD/hspy
    datasets or zspy arrays declaring more than `max_pixels` values; FileNotFoundError for a
    missing file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not (path.is_file() or (suffix in DIRECTORY_FORMATS and path.is_dir())):
        if path.is_dir():
            raise ValueError(f"{path}: is a directory, not an image file")
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        if suffix in RSCIIO_FORMATS:
            loaded = _read_rsciio(path, signal, max_pixels)
        elif suffix in PILLOW_FORMATS:
            loaded = _read_pillow(path, signal, max_pixels)
        else:
            raise ValueError(f"{path}: unsupported image format {suffix!r} (use one of {', '.join(FORMATS)})")
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    except Exception as e:  # Pillow's own DecompressionBombError, tifffile's TiffFileError, ...
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    return LoadedImage(_checked_grey(path, loaded.data), loaded.pixel_size_A, loaded.signal, loaded.calibration,
                       loaded.n_signals)


def _checked_grey(path: Path, arr) -> np.ndarray:
    """Grey float32 [H, W]; ValueError naming the file for complex, non-2-D, tiny, non-finite or
    constant images (the same checks for every reader)."""
    if np.iscomplexobj(arr):
        raise ValueError(f"{path}: complex-valued data is not an image")
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: image data is not numeric ({e})") from None
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
    if out.std(dtype=np.float64) == 0 or np.ptp(out) < np.finfo(np.float32).tiny:
        raise ValueError(f"{path}: image is constant (no contrast above float32 precision)")
    return out


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, signal: str | None = None
               ) -> tuple[np.ndarray, float | None]:
    """Read an image as grey float32 [H, W] and its pixel size in Å (None when not recorded).

    The image of :func:`load_image` (same formats, signal choice and errors) without the record
    of which signal was read and where the calibration came from.
    """
    loaded = load_image(path, signal=signal, max_pixels=max_pixels)
    return loaded.data, loaded.pixel_size_A


def normalize_unit(image: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map robust percentiles to [−1, 1] (clipped): insensitive to hot pixels and dark outliers."""
    lo, hi = np.percentile(image, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1e-12
    return np.clip(2 * (image - lo) / (hi - lo) - 1, -1, 1).astype(np.float32)
