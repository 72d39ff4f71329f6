import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from ase.io import read

from helpers import make_row
from vdwstack.cli import main
from vdwstack.core.io import open_image_dataset, read_tiff_pixel_size_A, write_image_dataset, write_tiff
from vdwstack.structures.enumeration import enumerate_dataset


def _table(n=5):
    spec = {"material": "MoS2", "slip_step_A": 0.6, "pixel_size_A": 0.1, "image_size_px": 32}
    return enumerate_dataset("io", spec, seed=1).iloc[:n].reset_index(drop=True)


def test_zarr_roundtrip(tmp_path):
    table = _table()
    imgs = np.random.default_rng(0).random((len(table), 32, 32)).astype(np.float32)
    out = tmp_path / "d.zarr"
    write_image_dataset(out, table, [(0, imgs[:3]), (3, imgs[3:])], {"simulator": {"method": "test"}}, chunk_images=2)
    root, labels = open_image_dataset(out)
    np.testing.assert_array_equal(root["images"][:], imgs)
    assert root["images"].chunks == (2, 32, 32)
    np.testing.assert_allclose(labels["Da_A"], table["Da_A"])
    assert list(labels["sample_id"]) == list(table["sample_id"])
    assert root.attrs["pixel_size_A"] == 0.1 and root.attrs["label_units"]["Da_A"] == "Å"
    assert "abtem" in root.attrs["versions"]


def test_failed_write_keeps_previous_dataset(tmp_path):
    table = _table()
    good = np.ones((len(table), 32, 32), np.float32)
    out = tmp_path / "d.zarr"
    write_image_dataset(out, table, [(0, good)], {})
    bad = good.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite"):
        write_image_dataset(out, table, [(0, bad)], {})
    root, _ = open_image_dataset(out)
    np.testing.assert_array_equal(root["images"][:], good)  # the earlier result is intact
    with pytest.raises(RuntimeError, match="only 2 of 5"):
        write_image_dataset(out, table, [(0, good[:2])], {})
    np.testing.assert_array_equal(open_image_dataset(out)[0]["images"][:], good)


def test_open_missing_dataset_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        open_image_dataset(tmp_path / "nope.zarr")


def test_tiff_carries_pixel_size(tmp_path):
    write_tiff(tmp_path / "a.tif", np.zeros((8, 8)), 0.0734)
    assert read_tiff_pixel_size_A(tmp_path / "a.tif") == pytest.approx(0.0734, rel=1e-6)
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 8), np.float32))
    assert read_tiff_pixel_size_A(tmp_path / "b.tif") is None


def test_cli_simulate_and_structure(tmp_path):
    tif = tmp_path / "x.tif"
    assert main(["simulate", "--material", "ReS2", "--slip", "1.0", "0.5", "--pixel-size", "0.08",
                 "--size", "64", "--out", str(tif)]) == 0
    img = tifffile.imread(tif)
    assert img.shape == (64, 64) and img.dtype == np.float32 and img.max() > 0
    assert read_tiff_pixel_size_A(tif) == pytest.approx(0.08)
    from vdwstack.simulate.render import simulate_row

    np.testing.assert_allclose(img, simulate_row(make_row("ReS2", size=64, pixel_size_A=0.08, Da_A=1.0, Db_A=0.5,
                                                          seed=_cli_seed())), rtol=1e-5, atol=1e-7)
    cif = tmp_path / "x.cif"
    assert main(["structure", "--material", "MoS2", "--twist", "7", "--size", "100", "--out", str(cif)]) == 0
    atoms = read(cif)
    assert set(atoms.get_chemical_symbols()) == {"Mo", "S"} and len(atoms) > 50


def _cli_seed():
    from vdwstack.structures.enumeration import sample_seed

    return sample_seed(0, "cli", 0)


def test_cli_structure_from_table_row(tmp_path):
    table = _table()
    path = tmp_path / "t.tsv"
    table.to_csv(path, sep="\t", index=False)
    xyz = tmp_path / "s.xyz"
    sid = table["sample_id"].iloc[2]
    assert main(["structure", "--table", str(path), "--sample", sid, "--out", str(xyz)]) == 0
    atoms = read(xyz)
    assert len(atoms) >= 3 and set(atoms.get_chemical_symbols()) <= {"Mo", "S"}
    with pytest.raises(SystemExit, match="no sample"):
        main(["structure", "--table", str(path), "--sample", "missing", "--out", str(xyz)])


def test_cli_errors_are_clear(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vdwstack.cli", "simulate", "--material", "MoTe3", "--out",
                          str(tmp_path / "a.tif")], capture_output=True, text=True)
    assert res.returncode != 0 and "MoTe3" in res.stderr
    res = subprocess.run([sys.executable, "-m", "vdwstack.cli", "simulate", "--material", "MoS2", "--pixel-size", "0",
                          "--out", str(tmp_path / "a.tif")], capture_output=True, text=True)
    assert res.returncode != 0 and "--pixel-size" in res.stderr
    assert not (tmp_path / "a.tif").exists()


def test_table_reader_rejects_other_tsv(tmp_path):
    from vdwstack.structures.enumeration import read_table

    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "x.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="x.tsv: not a stackings table"):
        read_table(tmp_path / "x.tsv")
