import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from helpers import make_row
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.drit.metrics import bragg_slip_A, column_displacement_A, find_columns, style_distance
from vdwstack.core.images import normalize_unit, read_image
from vdwstack.core.io import write_tiff
from vdwstack.simulate.pseudo_experimental import make_pseudo_experimental
from vdwstack.simulate.render import sample_atoms, simulate_row
from vdwstack.structures.symmetry import symmetry_for


def test_reads_png_rgb_grey_and_tiff(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img, p = read_image(tmp_path / "a.png")
    assert img.shape == (40, 50) and img.dtype == np.float32 and p is None
    np.testing.assert_allclose(img, rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
    write_tiff(tmp_path / "b.tif", np.arange(64 * 64, dtype=float).reshape(64, 64), 0.042)
    img, p = read_image(tmp_path / "b.tif")
    assert p == pytest.approx(0.042)


@pytest.mark.parametrize(
    "name,writer,message",
    [
        ("x.bmp2", lambda p: p.write_bytes(b"abc"), "unsupported image format"),
        ("x.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "cannot read image"),
        ("x.tif", lambda p: tifffile.imwrite(p, np.ones((64, 64), np.float32)), "constant"),
        ("x.tif", lambda p: tifffile.imwrite(p, np.random.rand(8, 8).astype(np.float32)), "too small"),
        ("x.tif", lambda p: tifffile.imwrite(p, np.full((64, 64), np.nan, np.float32)), "NaN"),
    ],
)
def test_bad_images_name_the_file(tmp_path, name, writer, message):
    path = tmp_path / name
    writer(path)
    with pytest.raises(ValueError, match=message) as e:
        read_image(path)
    assert name in str(e.value)


def test_pseudo_experimental_records_truth(tmp_path):
    spec = {"material": "ReS2", "Da_A": 1.0, "Db_A": 0.3, "pixel_size_A": 0.07, "size_px": 64,
            "degradation": {"dose_e_per_A2": 1e6, "drift_px": [1, 0]}}
    out = tmp_path / "p.tif"
    img = make_pseudo_experimental("t", spec, 3, out)
    back, p = read_image(out)
    np.testing.assert_allclose(back, img)
    assert p == pytest.approx(0.07)
    desc = json.loads(tifffile.TiffFile(out).pages[0].description)
    assert desc["truth"]["Da_A"] == 1.0 and desc["pseudo_experimental"] == "t"


@pytest.mark.parametrize("slip", [(1.0, 0.5), (2.2, -1.3)])
def test_bragg_slip_estimator_reads_simulated_slip(slip):
    row = make_row("ReS2", size=128, Da_A=slip[0], Db_A=slip[1], rotation_deg=37.0)
    bi, mono = simulate_row(row), simulate_row({**row, "layers": 1})
    est = bragg_slip_A(bi, mono, row)
    assert symmetry_for("ReS2").slip_error_A(*est, *slip) < 0.03
    noisy = degrade(bi, 0.1, Degradation(dose_e_per_A2=2e5), np.random.default_rng(0))
    assert symmetry_for("ReS2").slip_error_A(*bragg_slip_A(noisy, mono, row), *slip) < 0.03


def test_columns_and_displacement():
    row = make_row("MoS2", size=128, layers=1)
    img = simulate_row(row)
    cols = find_columns(img, 0.1)
    atoms = sample_atoms(row)
    mo = atoms.positions[np.array(atoms.get_chemical_symbols()) == "Mo", :2]
    d = np.linalg.norm(cols[:, None] - mo[None], axis=-1).min(axis=1)
    assert len(cols) >= 5 and np.median(d) < 0.02  # columns found where the Mo atoms are
    assert column_displacement_A(img, img, 0.1)["mean_A"] == pytest.approx(0.0, abs=1e-9)
    shifted = np.roll(img, 1, axis=1)  # one pixel = 0.1 Å
    assert column_displacement_A(img, shifted, 0.1)["mean_A"] == pytest.approx(0.1, abs=0.01)


def test_style_distance_prefers_matching_noise():
    rng = np.random.default_rng(0)
    clean = [normalize_unit(simulate_row(make_row("ReS2", size=64, Da_A=0.3 * i))) for i in range(3)]
    noisy = [normalize_unit(degrade(c + 1.5, 0.1, Degradation(gaussian_noise=0.5), rng)) for c in clean]
    ref = [normalize_unit(degrade(c + 1.5, 0.1, Degradation(gaussian_noise=0.5), rng)) for c in clean]
    d_clean = style_distance(clean, ref)
    d_noisy = style_distance(noisy, ref)
    assert d_noisy["power_spectrum"] < d_clean["power_spectrum"]
