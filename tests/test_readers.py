"""Image readers through rosettasciio: calibrations of TIFF flavours (ImageJ, FEI, DigitalMicrograph
tags, resolution tags), HyperSpy's hspy and zspy, multi-signal files (the HAADF image by default,
`signal=` for another), unit strings, and the header checks in front of every reader. Every file is
written here, small (128 px), so the whole module runs in seconds."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from vdwstack.core.images import LoadedImage, choose_signal, load_image, read_image, unit_to_A
from vdwstack.core.io import write_tiff
from vdwstack.core.sheets import read_sheet
from vdwstack.structures.pixel_size import load_calibrated_image, read_calibrated_image

N = 128


def _lattice(seed: int = 0, n: int = N) -> np.ndarray:
    """A lattice-like positive float32 image [n, n] with a little noise."""
    y, x = np.mgrid[:n, :n].astype(np.float64)
    angles = 0.2 + np.arange(3) * np.pi / 3
    img = sum(np.cos(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / 7.3) for a in angles)
    return (img + 3 + 0.1 * np.random.default_rng(seed).standard_normal((n, n))).astype(np.float32)


def _axes(n: int, scale: float, units: str) -> list[dict]:
    return [{"name": a, "size": n, "scale": scale, "offset": 0.0, "units": units, "navigate": False} for a in "yx"]


# --- units ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit,factor", [
    ("Å", 1.0), ("\u212b", 1.0), ("A", 1.0), ("a", 1.0), ("Angstrom", 1.0), ("angstroms", 1.0), ("ANGSTROM", 1.0),
    ("nm", 10.0), ("NM", 10.0), (" nm ", 10.0), ("pm", 0.01), ("\u00b5m", 1e4), ("\u03bcm", 1e4), ("um", 1e4),
    ("micron", 1e4), ("\\u00B5m", 1e4), ("\\u00C5", 1.0), ("m", 1e10), (b"nm", 10.0),
])
def test_length_units_are_read_case_insensitively(unit, factor):
    assert unit_to_A(unit) == factor


@pytest.mark.parametrize("unit", [None, "", "<undefined>", "px", "Pixel", "pixels"])
def test_no_unit_or_pixels_means_not_calibrated(unit):
    assert unit_to_A(unit) is None


@pytest.mark.parametrize("unit", ["furlong", "1/nm", "eV", "nm^-1"])
def test_unknown_unit_names_the_file_and_the_unit(unit):
    with pytest.raises(ValueError, match=r"frame\.hspy: the image's axes are in .*not a length unit") as e:
        unit_to_A(unit, "frame.hspy")
    assert repr(unit) in str(e.value)


# --- TIFF ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit,scale", [("nm", 0.0123), ("Angstrom", 0.123), ("micron", 1.23e-5),
                                        ("\\u00B5m", 1.23e-5), ("um", 1.23e-5)])
def test_imagej_tiff_calibration(tmp_path, unit, scale):
    import tifffile

    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, _lattice(), imagej=True, resolution=(1 / scale, 1 / scale), metadata={"unit": unit})
    loaded = load_image(path)
    assert isinstance(loaded, LoadedImage) and loaded.data.shape == (N, N) and loaded.data.dtype == np.float32
    assert loaded.pixel_size_A == pytest.approx(0.123, rel=1e-6)
    assert loaded.calibration == "imagej" and loaded.n_signals == 1 and loaded.signal is None
    image, px = read_calibrated_image(path, "MoS2")
    assert (px.pixel_size_A, px.source) == (pytest.approx(0.123, rel=1e-6), "metadata")
    assert np.array_equal(image, loaded.data)


def test_imagej_tiff_without_calibration_or_with_a_bad_unit(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", _lattice(), imagej=True, metadata={"unit": "pixel"})
    assert load_image(tmp_path / "plain.tif").pixel_size_A is None
    tifffile.imwrite(tmp_path / "odd.tif", _lattice(), imagej=True, resolution=(2, 2), metadata={"unit": "furlong"})
    with pytest.raises(ValueError, match=r"odd\.tif: .*'furlong'"):
        load_image(tmp_path / "odd.tif")


def test_fei_tiff_calibration(tmp_path):
    import tifffile

    ini = "[User]\nDate=01/01/2024\n[Scan]\nPixelWidth=1.23e-11\nPixelHeight=1.23e-11\n[System]\nSystemType=Titan\n"
    path = tmp_path / "velox_export.tif"
    tifffile.imwrite(path, (_lattice() * 1000).astype(np.uint16), extratags=[(34682, "s", 0, ini, True)])
    loaded = load_image(path)
    assert loaded.pixel_size_A == pytest.approx(0.123) and loaded.calibration == "fei"


def test_rosettasciio_tiff_with_digitalmicrograph_and_imagej_tags(tmp_path):
    from rsciio.tiff import file_writer

    sig = {"data": _lattice(), "axes": _axes(N, 0.0123, "nm"), "metadata": {"General": {"title": "HAADF"},
                                                                        "Signal": {"signal_type": ""}},
           "original_metadata": {}}
    file_writer(str(tmp_path / "rs.tif"), sig)
    loaded = load_image(tmp_path / "rs.tif")
    assert loaded.pixel_size_A == pytest.approx(0.123) and loaded.calibration is not None


def test_plain_tiff_falls_back_to_resolution_tags(tmp_path):
    write_tiff(tmp_path / "p.tif", _lattice(), 0.1, {"truth": {"Da_A": 1.0}})
    loaded = load_image(tmp_path / "p.tif")
    assert loaded.pixel_size_A == pytest.approx(0.1) and loaded.calibration == "resolution tags"
    assert read_image(tmp_path / "p.tif")[1] == pytest.approx(0.1)  # the old API, unchanged


# --- HyperSpy formats ----------------------------------------------------------------------------
def test_hspy_saved_by_hyperspy_in_nm(tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal2D(_lattice())
    s.metadata.General.title = "HAADF frame"
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 0.0123, "nm"
    s.save(tmp_path / "frame.hspy")
    loaded = load_image(tmp_path / "frame.hspy")
    assert loaded.pixel_size_A == pytest.approx(0.123) and loaded.calibration == "axes"
    assert loaded.signal == "HAADF frame" and np.allclose(loaded.data, _lattice())
    loaded, px = load_calibrated_image(tmp_path / "frame.hspy", "MoS2", 0.2, "sheet")
    assert (px.pixel_size_A, px.source) == (0.2, "sheet") and px.warnings  # the sheet wins, with a warning


@pytest.mark.parametrize("units,scale,expected", [("", 1.0, None), ("<undefined>", 1.0, None), ("px", 1.0, None),
                                                  ("Å", 0.05, 0.05), ("pm", 5.0, 0.05)])
def test_hspy_axis_units(tmp_path, units, scale, expected):
    from rsciio.hspy import file_writer

    sig = {"data": _lattice(), "axes": _axes(N, scale, units), "metadata": {"General": {"title": ""},
                                                                        "Signal": {"signal_type": ""}},
           "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
           "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}}
    file_writer(str(tmp_path / "u.hspy"), sig)
    loaded = load_image(tmp_path / "u.hspy")
    assert loaded.pixel_size_A == (pytest.approx(expected) if expected else None)
    assert loaded.signal is None  # an untitled signal


def test_hspy_with_a_bad_unit_names_the_file(tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal2D(_lattice())
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 2.0, "furlong"
    s.save(tmp_path / "odd.hspy")
    with pytest.raises(ValueError, match=r"odd\.hspy: the image's axes are in 'furlong'"):
        load_image(tmp_path / "odd.hspy")


def _write_zspy(path, data, axes, title):
    """A HyperSpy .zspy (a Zarr v2 directory store) written by rosettasciio. Its file_writer needs
    zarr 2 (rosettasciio ≤ 0.15 opens a NestedDirectoryStore); under zarr 3 its own writer class is
    given a v2 group, which is the same layout."""
    import zarr
    from rsciio.zspy import _api as zspy

    sig = {"data": data, "axes": axes, "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""}},
           "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
           "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}}
    try:
        zspy.file_writer(str(path), sig)
        return
    except AttributeError:  # zarr 3: no NestedDirectoryStore
        pass
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs.update(file_format="ZSpy", file_format_version=zspy.version)
    group = root.require_group("Experiments").require_group(title or "__unnamed__")
    zspy.ZspyWriter(root, sig, group, chunks=None, write_dataset=True, show_progressbar=False).write()


def test_zspy_round_trip(tmp_path):
    data = _lattice(3)
    _write_zspy(tmp_path / "frame.zspy", data, _axes(N, 12.3, "pm"), "HAADF")
    assert (tmp_path / "frame.zspy").is_dir()
    loaded = load_image(tmp_path / "frame.zspy")
    assert np.array_equal(loaded.data, data) and loaded.pixel_size_A == pytest.approx(0.123)
    assert (loaded.signal, loaded.calibration, loaded.n_signals) == ("HAADF", "axes", 1)
    # A sample sheet accepts the directory.
    sheet = tmp_path / "images.tsv"
    sheet.write_text("image_id\tpath\tmaterial\tlayers\ttask\tpixel_size_A\tsignal\n"
                     f"z\t{tmp_path / 'frame.zspy'}\tMoS2\t2\tslip\t\thaadf\n")
    schema = yaml.safe_load((__import__("pathlib").Path(__file__).parents[1] / "workflow" / "schemas"
                             / "images.schema.yaml").read_text())
    rows = read_sheet(sheet, schema, "image_id", tmp_path)
    assert rows.loc[0, "signal"] == "haadf"
    assert load_image(rows.loc[0, "path"], signal=rows.loc[0, "signal"]).signal == "HAADF"


def test_a_directory_that_is_no_zspy_is_refused(tmp_path):
    (tmp_path / "frames.tif").mkdir()
    with pytest.raises(ValueError, match=r"frames\.tif: is a directory"):
        load_image(tmp_path / "frames.tif")
    (tmp_path / "empty.zspy").mkdir()
    with pytest.raises(ValueError, match=r"empty\.zspy: cannot read"):
        load_image(tmp_path / "empty.zspy")


@pytest.mark.parametrize("suffix", [".hspy", ".zspy"])
def test_hyperspy_file_declaring_a_huge_array_is_refused_before_reading(tmp_path, suffix):
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".hspy":
        import h5py

        with h5py.File(path, "w") as f:
            f.attrs["file_format"], f.attrs["file_format_version"] = "HyperSpy", "3.3"
            f.create_dataset("Experiments/bomb/data", shape=(40000, 40000), dtype="f4", chunks=(1000, 1000),
                             compression="gzip")
    else:
        import zarr

        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        root.create_array("Experiments/bomb/data", shape=(40000, 40000), dtype="f4", chunks=(1000, 1000))
    with pytest.raises(ValueError, match=rf"bomb\{suffix}: header declares 40000 x 40000 .*over the limit"):
        load_image(path, max_pixels=10**8)


# --- several signals -----------------------------------------------------------------------------
def _berkeley_emd(path, signals: dict[str, np.ndarray], scale_nm: float = 0.0123) -> None:
    """A Berkeley (NCEM) EMD with one group per signal: ``signals/<title>/data`` (stored transposed,
    as rosettasciio writes it) and ``dim1``, ``dim2`` with attrs ``name`` and ``units``."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("signals")
        g.attrs["emd_group_type"] = 1
        for title, data in signals.items():
            s = g.create_group(title)
            s.attrs["emd_group_type"] = 1
            s.create_dataset("data", data=data.T)
            for k, name in ((1, "x"), (2, "y")):
                d = s.create_dataset(f"dim{k}", data=[0.0, scale_nm])
                d.attrs["name"], d.attrs["units"] = name, "[n_m]"


@pytest.fixture
def three_signal_emd(tmp_path):
    data = {"BF": _lattice(1), "HAADF": _lattice(2), "DF4": _lattice(3)}
    path = tmp_path / "velox_like.emd"
    _berkeley_emd(path, data)
    return path, data


def test_multi_signal_emd_reads_the_haadf_image(three_signal_emd):
    path, data = three_signal_emd
    loaded = load_image(path)
    assert loaded.signal == "HAADF" and np.allclose(loaded.data, data["HAADF"])
    assert loaded.n_signals == 3 and loaded.pixel_size_A == pytest.approx(0.123) and loaded.calibration == "axes"


@pytest.mark.parametrize("request_,title", [("BF", "BF"), ("bf", "BF"), (" df4 ", "DF4"), ("HAADF", "HAADF")])
def test_signal_by_title(three_signal_emd, request_, title):
    path, data = three_signal_emd
    loaded = load_image(path, signal=request_)
    assert loaded.signal == title and np.allclose(loaded.data, data[title])
    image, px = read_calibrated_image(path, "MoS2", signal=request_)
    assert np.array_equal(image, loaded.data) and px.source == "metadata"


def test_signal_by_index_and_unknown_names(three_signal_emd):
    path, _ = three_signal_emd
    import rsciio.emd

    titles = [s["metadata"]["General"]["title"] for s in rsciio.emd.file_reader(str(path))]
    assert load_image(path, signal="1").signal == titles[1]
    for bad in ("ADF2", "7"):
        with pytest.raises(ValueError, match=r"velox_like\.emd: no signal .* it holds 3: .*'BF'.*'DF4'") as e:
            load_image(path, signal=bad)
        assert repr(bad) in str(e.value)


def test_automatic_choice_rules(tmp_path):
    def sig(title, ndim=2):
        return {"data": np.zeros((4,) * ndim), "metadata": {"General": {"title": title}}}

    assert choose_signal("f", [sig("BF"), sig("DF2"), sig("HAADF")]) == 2
    assert choose_signal("f", [sig("ABF"), sig("ADF")]) == 1
    assert choose_signal("f", [sig("EDS", 3), sig("BF")]) == 1  # a single image, whatever its title
    assert choose_signal("f", [sig(""), sig("")]) == 0  # untitled series: the first
    with pytest.raises(ValueError, match=r"f: 2 images and none titled HAADF/ADF/DF: .*'BF'.*'iDPC'"):
        choose_signal("f", [sig("BF"), sig("iDPC")])
    with pytest.raises(ValueError, match=r"f: signal 'eds' is not a 2-D image .*images: 1: 'BF'"):
        choose_signal("f", [sig("EDS", 3), sig("BF")], "eds")


def test_single_signal_formats_take_index_0_only(tmp_path):
    from PIL import Image

    Image.fromarray((_lattice() * 40).astype(np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", signal="0").n_signals == 1
    assert load_image(tmp_path / "a.png", signal="").pixel_size_A is None
    with pytest.raises(ValueError, match=r"a\.png: no signal 'HAADF'"):
        load_image(tmp_path / "a.png", signal="HAADF")


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN or infinite"), (None, "constant")])
def test_content_checks_apply_to_the_new_readers(tmp_path, bad, match):
    data = np.ones((64, 64), np.float32)
    if bad is not None:
        data[3, 4] = bad
    _berkeley_emd(tmp_path / "x.emd", {"HAADF": data, "BF": _lattice()})
    with pytest.raises(ValueError, match=rf"x\.emd: .*{match}"):
        load_image(tmp_path / "x.emd")
    assert load_image(tmp_path / "x.emd", signal="BF").signal == "BF"


def test_tiff_that_rosettasciio_cannot_parse_is_read_with_tifffile(tmp_path):
    """rosettasciio needs the PhotometricInterpretation tag; tifffile does not: such a TIFF reads
    as before (first series, resolution tags)."""
    import struct

    path = tmp_path / "nophot.tif"
    write_tiff(path, _lattice(), 0.1)
    raw = bytearray(path.read_bytes())
    i = raw.find(struct.pack("<HH", 262, 3))  # the tag entry: code 262, type SHORT
    raw[i:i + 2] = struct.pack("<H", 65000)   # renamed to an unknown private tag
    path.write_bytes(bytes(raw))
    loaded = load_image(path)
    assert loaded.pixel_size_A == pytest.approx(0.1) and loaded.calibration == "resolution tags"
    assert np.allclose(loaded.data, _lattice())


def test_cli_signal_option_reads_the_named_signal(three_signal_emd, tmp_path, monkeypatch, capsys):
    """`vdwstack infer --signal DF4` reads DF4, and the summary and record say so (the fits are
    replaced by a stub here: the reading itself is tested elsewhere)."""
    import json

    import pandas as pd

    import vdwstack.closed_loop.stage as cl
    from vdwstack.cli import main as cli_main

    def no_fit(image_path, result_json, maps_npz, settings, out_dir, microscope=None):
        rec = json.loads(Path(result_json).read_text())
        return {**{k: rec.get(k) for k in ("path", "image_id", "material", "pixel_size_A", "pixel_size_source",
                                           "signal", "signal_requested")}, "status": "ok", "results": {}}

    monkeypatch.setattr(cl, "closed_loop_to_files", no_fit)
    path, _ = three_signal_emd
    for request, expect in ((None, "HAADF"), ("DF4", "DF4")):
        out = tmp_path / f"out_{expect}"
        args = ["infer", str(path), "--material", "MoS2", "--task", "twist", "--pixel-size", "0.123",
                "--out", str(out), "--threads", "1", "--json"] + (["--signal", request] if request else [])
        assert cli_main(args) == 0
        assert json.loads((out / "velox_like" / "result.json").read_text())["signal"] == expect
        assert pd.read_csv(out / "summary.tsv", sep="\t")["signal"].item() == expect
    capsys.readouterr()
