"""One pixel-size path for every stage: the user's value > the file's calibration > the Bragg spots,
a warning naming both when a given value and the calibration disagree, and datasets that store
their pixel size once."""

import numpy as np
import pandas as pd
import pytest
from helpers import make_row
from PIL import Image

from vdwstack.core.io import open_image_dataset, write_image_dataset, write_tiff
from vdwstack.drit.data import load_style_references
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.pixel_size import read_calibrated_image, resolve_pixel_size


@pytest.fixture(scope="module")
def mos2():
    """A clean MoS2 bilayer at 0.1 Å/px (its Bragg spots give the pixel size)."""
    return simulate_row(make_row("MoS2", size=256, pixel_size_A=0.1, rotation_deg=17.0))


def test_precedence_user_then_file_then_estimate(mos2):
    both = resolve_pixel_size(mos2, "MoS2", user_A=0.1, file_A=0.1, user_source="sheet", where="a.tif")
    assert (both.pixel_size_A, both.source, both.warnings) == (0.1, "sheet", ())
    file_only = resolve_pixel_size(mos2, "MoS2", file_A=0.1)
    assert (file_only.pixel_size_A, file_only.source) == (0.1, "metadata")
    est = resolve_pixel_size(mos2, "MoS2")
    assert est.source == "estimated" and est.pixel_size_A == pytest.approx(0.1, rel=0.02)


def test_disagreeing_values_warn_naming_both(mos2):
    r = resolve_pixel_size(mos2, "MoS2", user_A=0.12, file_A=0.1, user_source="sheet", where="img.tif")
    assert r.pixel_size_A == 0.12 and r.source == "sheet"
    assert len(r.warnings) == 1 and "img.tif" in r.warnings[0]
    assert "0.12 Å/px" in r.warnings[0] and "0.1 Å/px" in r.warnings[0] and "20 %" in r.warnings[0]
    # Within 2 %: no warning.
    assert resolve_pixel_size(mos2, "MoS2", user_A=0.1015, file_A=0.1).warnings == ()


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_bad_given_values_name_the_file(mos2, bad):
    with pytest.raises(ValueError, match=r"x\.tif: pixel size from the sheet must be a positive number"):
        resolve_pixel_size(mos2, "MoS2", user_A=bad, user_source="sheet", where="x.tif")


def test_inference_and_style_references_share_the_precedence(mos2, tmp_path):
    """The sample sheet's value wins over the file's for inference and for DRIT's style references
    alike (they used to disagree: style references sheet-first, inference file-first)."""
    write_tiff(tmp_path / "a.tif", mos2, 0.1)
    _img, px = read_calibrated_image(tmp_path / "a.tif", "MoS2", 0.105, "sheet")
    assert (px.pixel_size_A, px.source) == (0.105, "sheet") and px.warnings
    refs = load_style_references([{"reference_id": "a", "path": str(tmp_path / "a.tif"), "pixel_size_A": "0.105",
                                   "material": "MoS2"}], "MoS2", 0.1)
    assert (refs[0].pixel_size_A, refs[0].pixel_size_source) == (0.105, "sheet") and refs[0].warnings
    refs = load_style_references([{"reference_id": "a", "path": str(tmp_path / "a.tif"), "pixel_size_A": ""}],
                                 "MoS2", 0.1)
    assert (refs[0].pixel_size_A, refs[0].pixel_size_source) == (0.1, "metadata")


def test_known_pixel_sizes_are_not_estimated_again(tmp_path):
    """Synthesis takes the style references' pixel sizes from the DRIT card: an uncalibrated image
    without any lattice (which the estimator refuses) is read with the card's value."""
    noise = (np.random.default_rng(4).random((256, 256)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    row = {"reference_id": "n", "path": str(tmp_path / "noise.png"), "pixel_size_A": ""}
    with pytest.raises(ValueError, match="noise.png: no MoS2 lattice"):
        load_style_references([row], "MoS2", 0.1)
    refs = load_style_references([row], "MoS2", 0.1,
                                 known={"n": {"pixel_size_A": 0.05, "pixel_size_source": "estimated"}})
    assert (refs[0].pixel_size_A, refs[0].pixel_size_source) == (0.05, "estimated")
    assert refs[0].image.shape == (128, 128)  # resampled 0.05 → 0.1 Å/px


def test_a_dataset_stores_its_pixel_size_once(tmp_path):
    table = pd.DataFrame({"sample_id": ["a", "b"], "material": ["MoS2"] * 2, "layers": [2, 2],
                          "Da_A": [0.0, 1.0], "pixel_size_A": [0.1, 0.1], "height_px": [16, 16], "width_px": [16, 16]})
    write_image_dataset(tmp_path / "d.zarr", table, [(0, np.ones((2, 16, 16), np.float32))], {})
    root, labels = open_image_dataset(tmp_path / "d.zarr")
    assert root.attrs["pixel_size_A"] == 0.1
    assert "pixel_size_A" not in labels.columns and "pixel_size_A" not in root.attrs["label_columns"]
    table.loc[1, "pixel_size_A"] = 0.2
    with pytest.raises(ValueError, match="one pixel size"):
        write_image_dataset(tmp_path / "e.zarr", table, [(0, np.ones((2, 16, 16), np.float32))], {})
