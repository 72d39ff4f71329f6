"""The one resampler: anti-aliased, exact output pixel size, used wherever an image changes pixel size."""

import numpy as np
import pytest
from scipy.ndimage import zoom

from vdwstack.core.resample import resample

P_IN, P_OUT = 0.1, 0.25  # Å/px: a 2.5× coarser grid


def _lattice(n=500, seed=0):
    """A 3.0 Å lattice (kept: 0.083 cycles per output pixel) plus a fine 0.4 Å one (0.625 cycles per
    output pixel: above the new Nyquist, it must vanish, not fold back to 0.375) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * P_IN
    coarse = np.cos(2 * np.pi * x / 3.0) + np.cos(2 * np.pi * y / 3.0)
    fine = np.cos(2 * np.pi * x / 0.4) + np.cos(2 * np.pi * y / 0.4)
    return coarse + fine + 0.3 * rng.normal(size=(n, n))


def _peak_over_noise(img, freq_cycles_per_px):
    """Spectral amplitude at (0, f) over the noise: the median amplitude inside the pass band
    (Hann-windowed, so that the strong real lattice does not leak over the spectrum)."""
    n = min(img.shape)
    w = np.outer(np.hanning(n), np.hanning(n))
    a = np.abs(np.fft.fft2((img[:n, :n] - img[:n, :n].mean()) * w))
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    noise = np.median(a[(np.hypot(fy, fx) > 0.05) & (np.hypot(fy, fx) < 0.35)])
    k = int(round(freq_cycles_per_px * n))
    return a[0, k - 1:k + 2].max() / noise


def test_downsampling_shows_no_aliased_bragg_peak():
    img = _lattice()
    good = resample(img, P_IN, P_OUT)
    naive = zoom(img, P_IN / P_OUT, order=3)  # what the package did before: interpolation only
    alias = 1.0 - 0.4 ** -1 * P_OUT            # 0.625 cycles/px folds to 0.375
    assert _peak_over_noise(naive, alias) > 20      # the test can fail: the naive way aliases
    assert _peak_over_noise(good, alias) < 3        # here nothing stands above the noise
    assert _peak_over_noise(good, P_OUT / 3.0) > 50  # the real lattice is kept


def test_output_grid_has_exactly_the_new_pixel_size():
    img = _lattice(seed=1)
    out = resample(img, P_IN, P_OUT)
    assert out.shape == (int((500 - 1) * P_IN / P_OUT) + 1,) * 2
    # The 3 Å period is 12 output pixels: the spectrum peaks exactly there.
    n = 192
    a = np.abs(np.fft.rfft(out[0, :n] - out[0, :n].mean()))
    assert np.argmax(a) == round(n * P_OUT / 3.0)
    # Pixel 0 stays at x = 0, and refining only interpolates (a smooth image is reproduced).
    y, x = np.mgrid[0:80, 0:80] * 0.2
    smooth = np.cos(2 * np.pi * x / 5.0) * np.cos(2 * np.pi * y / 7.0)
    fine = resample(smooth, 0.2, 0.1)
    yy, xx = np.mgrid[0:fine.shape[0], 0:fine.shape[1]] * 0.1
    truth = np.cos(2 * np.pi * xx / 5.0) * np.cos(2 * np.pi * yy / 7.0)
    assert np.abs(fine - truth)[5:-5, 5:-5].max() < 2e-3


def test_same_pixel_size_is_a_copy_and_dtype_is_kept():
    img = np.random.default_rng(2).random((40, 50)).astype(np.float32)
    out = resample(img, 0.1, 0.1)
    assert out.dtype == np.float32 and np.array_equal(out, img) and out is not img
    assert resample(img.astype(np.float64), 0.1, 0.2).dtype == np.float64
    with pytest.raises(ValueError, match="pixel sizes must be positive"):
        resample(img, 0.1, 0.0)
