"""The regressors' training crops: the batched cubic spline, the crop geometry, the prefetch policy."""

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from vdwstack.regress import training
from vdwstack.regress.augment import Augmentation, random_crops
from vdwstack.regress.model import TargetCodec
from vdwstack.regress.spline import SplineImages, sample_spline, spline_coefficients
from vdwstack.regress.training import BatchStream, RegressorConfig, TrainingData


def test_spline_equals_scipys_cubic_spline_everywhere_in_the_image():
    rng = np.random.default_rng(1)
    img = rng.random((3, 40, 33))
    rows, cols = rng.uniform(0, 39, (3, 30, 30)), rng.uniform(0, 32, (3, 30, 30))
    rows[:, 0, :3], cols[:, 0, :3] = [0, 39, 39], [0, 0, 32]  # the corners too
    got = sample_spline(spline_coefficients(torch.from_numpy(img)), torch.from_numpy(rows), torch.from_numpy(cols))
    want = np.stack([map_coordinates(img[b], [rows[b], cols[b]], order=3, mode="mirror") for b in range(3)])
    assert got.shape == (3, 30, 30) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_spline_reproduces_the_images_at_their_pixels():
    img = np.random.default_rng(2).random((2, 20, 24)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(20.0), np.arange(24.0), indexing="ij")
    sp = SplineImages(img, chunk=1)
    out = sp.sample([1, 0], torch.tensor(np.stack([rows, rows])), torch.tensor(np.stack([cols, cols])))
    np.testing.assert_allclose(out.numpy(), img[::-1], atol=1e-5)
    with pytest.raises(ValueError, match="larger than 12 px"):
        spline_coefficients(torch.zeros(1, 8, 30))


def test_random_crops_rotate_and_rescale_inside_the_image():
    # A linear ramp: its cubic spline is the ramp itself, so each crop is a plane whose gradient has
    # the ramp's magnitude times the crop's scale, pointing where the crop's rotation turned it.
    H = W = 90
    r, c = np.mgrid[0:H, 0:W].astype(np.float32)
    ramp = 0.3 * r + 0.4 * c  # |gradient| 0.5 per pixel
    sp = SplineImages(np.stack([ramp, ramp + 1]))
    crops = random_crops(sp, np.array([0, 1] * 20), 40, np.random.default_rng(0), rotate=True, scale_jitter=0.05)
    assert crops.shape == (40, 40, 40) and crops.dtype == np.float32
    norms, directions = [], []
    for crop in crops:
        gy, gx = np.gradient(crop[10:30, 10:30].astype(np.float64))  # ≥ 12 px from the image's mirrored edges
        norms.append(np.hypot(gy.mean(), gx.mean()))
        directions.append(np.arctan2(gy.mean(), gx.mean()))
        assert np.ptp(gy) < 1e-3 and np.ptp(gx) < 1e-3  # a plane: interpolation added nothing
    assert 0.5 * 0.95 - 1e-3 <= min(norms) and max(norms) <= 0.5 * 1.05 + 1e-3
    assert np.ptp(norms) > 0.01  # rescaled
    assert np.ptp(np.unwrap(directions)) > 1.0  # rotated
    assert crops.min() >= ramp.min() and crops.max() <= ramp.max() + 1  # sampled inside, nothing padded


def test_plain_crops_are_pieces_of_the_image():
    img = np.random.default_rng(3).random((4, 50, 60)).astype(np.float32)
    crops = random_crops(SplineImages(img), np.arange(4), 32, np.random.default_rng(1), rotate=False)
    for k, crop in enumerate(crops):
        hits = [(i, j) for i in range(50 - 31) for j in range(60 - 31)
                if np.allclose(img[k, i:i + 32, j:j + 32], crop, atol=1e-5)]
        assert len(hits) == 1
    with pytest.raises(ValueError, match="smaller than a 56 px crop"):
        random_crops(SplineImages(img), np.arange(4), 56, np.random.default_rng(1))


def test_batches_are_reproducible_from_their_seed():
    img = np.random.default_rng(4).random((6, 64, 64)).astype(np.float32)
    data = TrainingData(img, {"Da_A": np.zeros(6), "Db_A": np.zeros(6)}, TargetCodec("slip", "ReS2"), 0.12, 48,
                        Augmentation(), raw_intensity=True)
    a, ya = data.batch(5, np.random.default_rng([7, 3]))
    b, yb = data.batch(5, np.random.default_rng([7, 3]))
    assert a.shape == (5, 1, 48, 48) and a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)


def test_prefetch_thread_only_where_a_core_is_free(monkeypatch):
    img = np.random.default_rng(5).random((2, 64, 64)).astype(np.float32)
    data = TrainingData(img, {"Da_A": np.zeros(2), "Db_A": np.zeros(2)}, TargetCodec("slip", "ReS2"), 0.12, 48,
                        Augmentation.off(), raw_intensity=True)
    cfg = RegressorConfig.from_mapping({"crop_px": 48, "steps": 3, "prefetch": True})
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: 2)
    busy = BatchStream(data, cfg, torch.device("cpu"))
    assert busy.pool is None
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: 1)
    spare = BatchStream(data, cfg, torch.device("cpu"))
    off = BatchStream(data, RegressorConfig.from_mapping({"crop_px": 48, "steps": 3, "prefetch": False}),
                      torch.device("cpu"))
    assert spare.pool is not None and off.pool is None
    # a job given one core of the two (the CPU-hour profile's trainings side by side) has none to spare
    one_core = BatchStream(data, cfg, torch.device("cpu"), cores=1)
    assert one_core.pool is None
    one_core.close()
    # the same batches either way
    for step in range(3):
        np.testing.assert_array_equal(busy.get(step)[0], spare.get(step)[0])
    for s in (busy, spare, off):
        s.close()


def test_a_large_stack_computes_the_coefficients_of_each_call_only():
    img = np.random.default_rng(6).random((5, 30, 30)).astype(np.float32)
    kept, lazy = SplineImages(img), SplineImages(img, max_bytes=1000)
    assert kept.coefficients is not None and lazy.coefficients is None
    rows = torch.rand(2, 7, 7) * 29
    cols = torch.rand(2, 7, 7) * 29
    np.testing.assert_allclose(lazy.sample([4, 1], rows, cols).numpy(), kept.sample([4, 1], rows, cols).numpy(),
                               atol=1e-6)
