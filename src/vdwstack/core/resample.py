"""The one resampler: an image taken at one pixel size, sampled at another, without aliasing.

scipy's ``zoom``/``map_coordinates`` interpolate but do not low-pass: coarsening an image with
them folds everything above the new Nyquist frequency (noise, fine lattice detail) back into the
band as spurious spots. Here the image is first low-passed along rows and columns by a
Kaiser-windowed FIR filter (scipy.signal's design: pass band to 0.8 of the new Nyquist frequency,
stop band from the new Nyquist frequency on, 60 dB down; a separable filter is what the
rectangular sampling grid needs, and unlike a Fourier-space cut it does not leak from the
image's edges), then sampled with cubic splines at exactly the new pixel size (x = col·p for
input and output: pixel 0 stays at x = 0). No library offers this for arbitrary, non-integer
factors on a given output grid.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import convolve1d, map_coordinates

_PASS_FRACTION = 0.8       # of the new Nyquist frequency: kept
_STOP_ATTENUATION_DB = 60.0  # above the new Nyquist frequency


@lru_cache(maxsize=32)
def _lowpass_taps(factor: float) -> np.ndarray:
    """FIR taps (odd length) for sampling every `factor` input pixels."""
    from scipy.signal import firwin, kaiserord  # here: scipy.signal costs 0.4 s to import in every job

    nyq_new = 0.5 / factor  # cycles per input pixel
    width = (1 - _PASS_FRACTION) * nyq_new / 0.5  # transition width relative to the input Nyquist
    numtaps, beta = kaiserord(_STOP_ATTENUATION_DB, width)
    numtaps |= 1
    cutoff = (1 + _PASS_FRACTION) / 2 * nyq_new / 0.5
    return firwin(numtaps, cutoff, window=("kaiser", beta))


def antialias(image: np.ndarray, factor: float) -> np.ndarray:
    """Low-pass `image` (float64 [H, W]) so that it can be sampled every `factor` (> 1) input pixels:
    spatial frequencies above 0.5/factor cycles per pixel (along rows or columns) are suppressed by
    60 dB, those below 0.4/factor kept; edges are mirrored."""
    img = np.asarray(image, np.float64)
    if factor <= 1.0:
        return img
    taps = _lowpass_taps(round(float(factor), 9))
    return convolve1d(convolve1d(img, taps, axis=0, mode="reflect"), taps, axis=1, mode="reflect")


def resample(image: np.ndarray, pixel_size_A: float, new_pixel_size_A: float,
             origin_px: tuple[float, float] = (0.0, 0.0), shape: tuple[int, int] | None = None,
             mode: str = "reflect") -> np.ndarray:
    """`image` ([H, W] at `pixel_size_A` Å/px) sampled every `new_pixel_size_A` Å.

    Output pixel (i, j) lies at input pixel (origin_px[0] + i·s, origin_px[1] + j·s) with
    s = new / old pixel size; by default the output covers the input from pixel 0 ([⌊(H−1)/s⌋+1,
    ⌊(W−1)/s⌋+1] pixels). Coarsening (s > 1) is anti-aliased (:func:`antialias`); refining only
    interpolates. Returns the input's float dtype (float32 stays float32; else float64).
    """
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0 and np.isfinite(new_pixel_size_A) and new_pixel_size_A > 0):
        raise ValueError(f"pixel sizes must be positive, got {pixel_size_A!r} → {new_pixel_size_A!r} Å")
    arr = np.asarray(image)
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    s = float(new_pixel_size_A) / float(pixel_size_A)
    H, W = arr.shape
    if shape is None:
        shape = (int(np.floor((H - 1) / s + 1e-9)) + 1, int(np.floor((W - 1) / s + 1e-9)) + 1)
    if abs(s - 1) < 1e-9 and origin_px == (0.0, 0.0) and tuple(shape) == (H, W):
        return arr.astype(dtype, copy=True)
    rows = origin_px[0] + np.arange(shape[0]) * s
    cols = origin_px[1] + np.arange(shape[1]) * s
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return map_coordinates(antialias(arr, s), [rr, cc], order=3, mode=mode).astype(dtype)
