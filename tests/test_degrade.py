import numpy as np
import pytest

from vdwstack.simulate.degrade import Degradation, degrade


def _img():
    y, x = np.mgrid[0:64, 0:64]
    return (0.01 * (1 + np.cos(2 * np.pi * x / 8) * np.cos(2 * np.pi * y / 8))).astype(np.float32)


def test_poisson_noise_follows_dose():
    img = _img()
    rng = np.random.default_rng(0)
    lo = degrade(img, 0.1, Degradation(dose_e_per_A2=1e5), rng)
    hi = degrade(img, 0.1, Degradation(dose_e_per_A2=1e7), rng)
    assert lo.shape == img.shape and lo.dtype == np.float32
    # Shot noise variance scales as 1/dose: 100x dose → 10x smaller RMS error.
    ratio = np.std(lo - img) / np.std(hi - img)
    assert ratio == pytest.approx(10, rel=0.2)
    assert abs(lo.mean() - img.mean()) < 0.05 * img.mean()


def test_deterministic_and_distortions_change_image():
    img = _img()
    p = Degradation(scanline_jitter_px=0.5, drift_px=(2.0, 1.0), contamination_blobs=3, gaussian_noise=0.05)
    a = degrade(img, 0.1, p, np.random.default_rng(1))
    b = degrade(img, 0.1, p, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - img).mean() > 0.01 * img.mean()


def test_bad_dose_is_named():
    with pytest.raises(ValueError, match="dose_e_per_A2"):
        degrade(_img(), 0.1, Degradation(dose_e_per_A2=0), np.random.default_rng(0))


def test_shift_rows_is_the_2d_cubic_spline_at_integer_rows():
    """The scan-line shift's 1-D per-row spline gives map_coordinates' order-3 values (edges too)."""
    from scipy.ndimage import map_coordinates

    from vdwstack.simulate.degrade import shift_rows

    rng = np.random.default_rng(5)
    img = rng.random((40, 57))
    for rms in (0.3, 2.5):
        dx = rng.normal(0.0, rms, 40)
        rows, cols = np.mgrid[0:40, 0:57].astype(float)
        ref = map_coordinates(img, [rows, cols + dx[:, None]], order=3, mode="reflect")
        np.testing.assert_allclose(shift_rows(img, dx), ref, atol=1e-12)
    np.testing.assert_allclose(shift_rows(img, np.zeros(40)), img, atol=1e-12)
