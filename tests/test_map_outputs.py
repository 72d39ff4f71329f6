"""What infer writes for other programs: a calibrated float32 TIFF per map (ImageJ metadata in nm,
the map's stride as its pixel) and maps.zarr (every map with its axes); the record of which signal
was read from a multi-signal file, and the closed loop reading the same one."""

import json

import numpy as np
import pytest
import torch

from helpers import make_row
from vdwstack.core.images import load_image
from vdwstack.infer.stage import infer_to_files
from vdwstack.regress.model import TargetCodec, build_resnet, export_regressor
from vdwstack.simulate.render import simulate_row

SETTINGS = {"window_A": 6.0, "stride_A": 3.0, "whole_image_crops": 4, "tta_rotations": 1}


@pytest.fixture(scope="module")
def slip_model(tmp_path_factory):
    """An untrained but complete ReS2 slip model folder (the plumbing does not need a good model)."""
    torch.manual_seed(0)
    codec = TargetCodec("slip", "ReS2", 2)
    out = tmp_path_factory.mktemp("models") / "slip_ReS2"
    out.mkdir()
    card = {"architecture": "resnet18", "task": "slip", "encoding": codec.to_dict(),
            "input": {"channels": 1, "crop_px": 48, "pixel_size_A": 0.12},
            "training": {"dataset": "none", "slip_step_A": 0.5}}
    export_regressor(build_resnet("resnet18", codec.dim).eval(), out, card)
    return out


@pytest.fixture(scope="module")
def res2():
    """A ReS2 bilayer at 0.1 Å/px, 128 px."""
    return simulate_row(make_row("ReS2", size=128, pixel_size_A=0.1, Da_A=1.0, Db_A=0.4, rotation_deg=30))


@pytest.fixture(scope="module")
def imagej_tif(res2, tmp_path_factory):
    """The image as an ImageJ-calibrated TIFF (0.01 nm/px)."""
    import tifffile

    path = tmp_path_factory.mktemp("img") / "fiji.tif"
    tifffile.imwrite(path, res2, imagej=True, resolution=(100.0, 100.0), metadata={"unit": "nm"})
    return path


def test_maps_as_calibrated_tiffs_and_zarr(slip_model, imagej_tif, tmp_path):
    import tifffile
    import zarr

    rec = infer_to_files(imagej_tif, "fiji", "ReS2", 2, "slip", None, {"slip": slip_model}, SETTINGS, tmp_path,
                         on_error="raise")
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["pixel_size_source"] == "metadata" and on_disk["pixel_size_A"] == pytest.approx(0.1)
    assert on_disk["calibration"] == "imagej" and on_disk["signal"] is None and on_disk["n_signals"] == 1
    slip = rec["results"]["slip"]
    stride_A = slip["map"]["stride_A"]
    x0, x1, y1, y0 = slip["map_extent_A"]
    npz = np.load(tmp_path / "maps.npz")
    names = sorted(k for k in npz.files if k != "image")
    assert {"slip_Da_A", "slip_Db_A", "slip_domains", "slip_boundaries"} <= set(names)
    assert sorted(p.stem for p in (tmp_path / "maps").glob("*.tif")) == names
    for name in names:
        path = tmp_path / "maps" / f"{name}.tif"
        with tifffile.TiffFile(path) as tif:
            meta = tif.imagej_metadata
            arr = tif.asarray()
            num, den = tif.pages[0].tags["XResolution"].value
        assert arr.dtype == np.float32 and np.allclose(arr, npz[name].astype(np.float32))
        # ImageJ: `unit` nm, resolution in pixels per nm, origin (in pixels) at the map's top-left corner.
        assert meta["unit"] == "nm" and den / num == pytest.approx(stride_A / 10, rel=1e-6)
        assert -meta["xorigin"] * stride_A == pytest.approx(x0) and -meta["yorigin"] * stride_A == pytest.approx(y0)
        assert json.loads(meta["Info"])["map"] == name.split("_", 1)[1]
        # …and this package's reader reads the map's pixel size back.
        if npz[name].std() > 0 and min(npz[name].shape) >= 32:
            assert load_image(path).pixel_size_A == pytest.approx(stride_A, rel=1e-6)
    store = zarr.open_group(str(tmp_path / "maps.zarr"), mode="r")
    assert store.attrs["image_id"] == "fiji"
    da = store["slip/Da_A"]
    assert np.allclose(da[:], npz["slip_Da_A"]) and da.attrs["units"] == "Å"
    ax_y, ax_x = da.attrs["axes"]
    assert (ax_x["name"], ax_x["units"], ax_x["size"]) == ("x", "nm", npz["slip_Da_A"].shape[1])
    assert ax_x["scale"] == pytest.approx(stride_A / 10) and ax_x["offset"] == pytest.approx((x0 + stride_A / 2) / 10)
    assert ax_y["offset"] == pytest.approx((y0 + stride_A / 2) / 10)
    assert np.allclose(store["slip/x"][:], ax_x["offset"] + ax_x["scale"] * np.arange(ax_x["size"]))
    assert np.array_equal(store["slip/domains"][:], npz["slip_domains"])


def test_a_rerun_replaces_the_maps_and_a_failure_leaves_empty_outputs(slip_model, imagej_tif, tmp_path):
    # Maps of an earlier run (another task, another model) are gone after a rerun into the same folder.
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "twist_theta_deg.tif").write_bytes(b"x")
    rec = infer_to_files(imagej_tif, "fiji", "ReS2", 2, "slip", None, {"slip": None}, SETTINGS, tmp_path)
    assert rec["status"] == "ok" and not list((tmp_path / "maps").iterdir())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rec = infer_to_files(bad, "bad", "ReS2", 2, "slip", 0.1, {"slip": slip_model}, None, tmp_path / "bad")
    assert rec["status"] == "error"
    assert (tmp_path / "bad" / "maps").is_dir() and not list((tmp_path / "bad" / "maps").iterdir())
    assert (tmp_path / "bad" / "maps.zarr").is_dir()


def test_the_signal_read_is_recorded_and_the_closed_loop_reads_it_again(slip_model, res2, tmp_path, monkeypatch):
    import h5py

    import vdwstack.closed_loop.stage as closed_loop
    from vdwstack.closed_loop.settings import ClosedLoopSettings

    path = tmp_path / "two.emd"
    bf = (res2.max() - res2).astype(np.float32)
    with h5py.File(path, "w") as f:  # Berkeley EMD: a BF and a HAADF image, BF first
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("signals")
        g.attrs["emd_group_type"] = 1
        for title, data in (("BF", bf), ("HAADF", res2)):
            s = g.create_group(title)
            s.attrs["emd_group_type"] = 1
            s.create_dataset("data", data=np.asarray(data, np.float32).T)
            for k in (1, 2):
                s.create_dataset(f"dim{k}", data=[0.0, 0.01]).attrs.update(name="x" if k == 1 else "y", units="[n_m]")

    auto = infer_to_files(path, "two", "ReS2", 2, "slip", None, {"slip": None}, SETTINGS, tmp_path / "auto")
    assert (auto["signal"], auto["signal_requested"], auto["n_signals"]) == ("HAADF", None, 2)
    assert auto["pixel_size_A"] == pytest.approx(0.1) and auto["pixel_size_source"] == "metadata"
    chosen = infer_to_files(path, "two", "ReS2", 2, "slip", None, {"slip": None}, SETTINGS, tmp_path / "bf",
                            signal="bf")
    assert (chosen["signal"], chosen["signal_requested"]) == ("BF", "bf")
    assert json.loads((tmp_path / "bf" / "result.json").read_text())["signal"] == "BF"
    unknown = infer_to_files(path, "two", "ReS2", 2, "slip", None, {"slip": None}, SETTINGS, tmp_path / "x",
                             signal="DF2")
    assert unknown["status"] == "error" and "two.emd" in unknown["error"] and "'HAADF'" in unknown["error"]

    seen = []

    def spy(image_path, **kw):
        seen.append(load_image(image_path, signal=kw.get("signal")).signal)
        raise RuntimeError("stop: only the read is tested")

    monkeypatch.setattr(closed_loop, "read_image", spy)
    for rec in (auto, chosen):
        with pytest.raises(RuntimeError, match="stop"):
            closed_loop.closed_loop_record(path, rec, None, ClosedLoopSettings())
    assert seen == ["HAADF", "BF"]
