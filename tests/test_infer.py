"""Inference on experimental-like images: readers, pixel size, maps, domains, JSON, atomic models,
report and the `vdwstack infer` command."""

import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from helpers import make_row, untrained_model
from vdwstack.cli import main as cli_main
from vdwstack.core.images import read_image
from vdwstack.infer import InferenceSettings, domain_boundaries, infer_image, segment_domains
from vdwstack.structures.geometry import reading_atoms
from vdwstack.infer.stage import infer_to_files
from vdwstack.core.io import write_tiff
from vdwstack.structures.pixel_size import estimate_pixel_size
from vdwstack.regress.model import Regressor
from vdwstack.report.stage import write_report
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.names import name_stacking, stacking_names
from vdwstack.structures.symmetry import symmetry_for
from vdwstack.simulate.degrade import Degradation, degrade


# --- readers -------------------------------------------------------------------------------------
def _mrc(path, data, pixel_A):
    """A minimal MRC2014 file (mode 2, float32) with the pixel size in the cell dimensions."""
    ny, nx = data.shape
    h = bytearray(1024)
    struct.pack_into("<3i", h, 0, nx, ny, 1)
    struct.pack_into("<i", h, 12, 2)
    struct.pack_into("<3i", h, 28, nx, ny, 1)
    struct.pack_into("<3f", h, 40, nx * pixel_A, ny * pixel_A, pixel_A)
    struct.pack_into("<3f", h, 52, 90, 90, 90)
    struct.pack_into("<3i", h, 64, 1, 2, 3)
    h[208:212] = b"MAP "
    h[212:216] = bytes([0x44, 0x44, 0, 0])
    path.write_bytes(bytes(h) + data.astype("<f4").tobytes())


def test_reads_microscope_formats_with_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((48, 64)).astype(np.float32)
    _mrc(tmp_path / "a.mrc", data, 0.7)
    img, p = read_image(tmp_path / "a.mrc")
    assert img.shape == (48, 64) and np.allclose(img, data) and p == pytest.approx(0.7, rel=1e-5)
    pytest.importorskip("h5py")
    from rsciio.emd import file_writer

    axes = [{"size": 48, "scale": 0.005, "offset": 0, "units": "nm", "name": "y", "navigate": False},
            {"size": 64, "scale": 0.005, "offset": 0, "units": "nm", "name": "x", "navigate": False}]
    file_writer(str(tmp_path / "a.emd"), {"data": data, "axes": axes, "metadata": {"General": {"title": "t"},
                                                                                    "Signal": {"signal_type": ""}},
                                          "original_metadata": {}})
    img, p = read_image(tmp_path / "a.emd")
    assert np.allclose(img, data) and p == pytest.approx(0.05)


def test_reads_jpeg_and_png_without_pixel_size(tmp_path):
    from PIL import Image

    grey = (np.random.default_rng(1).random((40, 50)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=95)
    img, p = read_image(tmp_path / "g.jpg")
    assert img.shape == (40, 50) and p is None and abs(img.mean() - grey.mean()) < 3


@pytest.mark.parametrize("name,content,message", [
    ("broken.dm3", b"not a dm3 file at all" * 10, "cannot read microscope file"),
    ("broken.ser", b"\x00" * 64, "cannot read microscope file"),
    ("image.xyz", b"3\n\n", "unsupported image format"),
])
def test_damaged_microscope_files_name_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        read_image(tmp_path / name)
    assert name in str(e.value)


def test_truncated_png_names_the_file(tmp_path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(2).random((128, 128)) * 255).astype(np.uint8)).save(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="t.png"):
        read_image(tmp_path / "t.png")


# --- pixel size ----------------------------------------------------------------------------------
@pytest.mark.parametrize("material,p,rot", [("MoS2", 0.07, 17.0), ("ReS2", 0.1, 41.0), ("WS2", 0.15, 0.0)])
def test_pixel_size_from_bragg_spots_within_2_percent(material, p, rot):
    size = int(max(256, 2 * round(15 / p)))
    img = simulate_row(make_row(material, size=size, pixel_size_A=p, rotation_deg=rot, Da_A=0.7, Db_A=0.3))
    img = degrade(img - img.min() + 1e-3, p, Degradation(dose_e_per_A2=2e5, gaussian_noise=0.1),
                  np.random.default_rng(3))
    est = estimate_pixel_size(img, material)
    assert est.pixel_size_A == pytest.approx(p, rel=0.02)


def test_pixel_size_refuses_an_image_without_lattice():
    noise = np.random.default_rng(4).random((256, 256))
    with pytest.raises(ValueError, match="no MoS2 lattice"):
        estimate_pixel_size(noise, "MoS2")


# --- inference -----------------------------------------------------------------------------------
def _model(tmp_path, task, material, crop=48, p=0.12):
    return untrained_model(tmp_path, task, material, crop=crop, pixel_size_A=p)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return {"slip": _model(base, "slip", "ReS2"), "twist": _model(base, "twist", "MoS2")}


@pytest.fixture(scope="module")
def res2_tif(tmp_path_factory):
    """A ReS2 image at 0.1 Å/px (the models are at 0.12) with its truth in the TIFF."""
    path = tmp_path_factory.mktemp("img") / "res2.tif"
    img = simulate_row(make_row("ReS2", size=160, pixel_size_A=0.1, Da_A=1.0, Db_A=0.4, rotation_deg=30))
    write_tiff(path, img, 0.1, {"truth": {"material": "ReS2", "Da_A": 1.0, "Db_A": 0.4}})
    return path


def test_map_shapes_and_whole_image_estimate(models, res2_tif):
    img, p = read_image(res2_tif)
    reg = Regressor(models["slip"])
    s = InferenceSettings(window_A=6.0, stride_A=2.0, whole_image_crops=4, tta_rotations=2)
    res = infer_image(img, p, reg, s, "res2")
    # Window = the model's field (48 px × 0.12 Å = 5.76 Å → 6 Å); image 16 Å; stride 2.04 Å (17 px).
    n = len(range(25, 133 - 50 + 25 + 1, 17))
    assert res.maps["Da_A"].shape == res.maps["Db_A"].shape == (n, n)
    assert res.domain_labels.shape == (n, n) and res.boundaries.dtype == bool
    r = res.record
    assert r["pixel_size_A"] == 0.1 and r["task"] == "slip" and r["n_crops"] == 4
    assert {"Da_A", "Db_A", "spread_A", "uncertainty_A", "domains", "stacking", "map"} <= set(r)
    assert symmetry_for("ReS2").is_canonical(r["Da_A"], r["Db_A"], tol_A=1e-6)
    assert r["uncertainty_A"] <= r["spread_A"] + 1e-12
    # 5 × 5 windows of 6 Å at 2 Å: no 3 lags of a window side or more, so no slip-map twist
    assert "twist_from_slip_map" in r and r["twist_from_slip_map"] is None


def test_image_smaller_than_a_window_is_refused(models):
    reg = Regressor(models["slip"])
    with pytest.raises(ValueError, match="smaller than one window"):
        infer_image(np.random.default_rng(0).random((40, 40)), 0.1, reg, image_id="tiny.png")


def test_tta_averages_rotated_copies(models, res2_tif):
    """With all four quarter turns the estimate of an image equals that of its rotated copy."""
    img, _ = read_image(res2_tif)
    img = img[:144, :144]
    reg = Regressor(models["slip"])
    s = InferenceSettings(whole_image_crops=1, tta_rotations=4)
    a = infer_image(img, reg.pixel_size_A, reg, s).record  # no resampling: exact quarter turns
    b = infer_image(np.rot90(img).copy(), reg.pixel_size_A, reg, s).record
    assert symmetry_for("ReS2").slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"]) < 1e-3


def test_a_chiral_lattice_is_read_in_both_hands_and_its_mirror_image_swaps_them(models, res2_tif):
    """ReS2's mirror image is another lattice: the reading weighs the image as imaged and as its
    mirror. Reading the flipped image swaps the two hands' residuals exactly (one centred crop, no
    resampling), so both readings agree once each keeps its better hand."""
    img, _ = read_image(res2_tif)
    img = img[:144, :144]
    reg = Regressor(models["slip"])
    s = InferenceSettings(whole_image_crops=1, tta_rotations=4)
    a = infer_image(img, reg.pixel_size_A, reg, s).record
    b = infer_image(np.fliplr(img).copy(), reg.pixel_size_A, reg, s).record
    assert a["hand"]["residual_as_is"] == pytest.approx(b["hand"]["residual_mirrored"], rel=1e-5)
    assert a["hand"]["residual_mirrored"] == pytest.approx(b["hand"]["residual_as_is"], rel=1e-5)
    assert a["mirrored"] == a["hand"]["mirrored"] and b["mirrored"] == b["hand"]["mirrored"]
    if a["hand"]["decided"]:
        assert a["mirrored"] != b["mirrored"]
        assert symmetry_for("ReS2").slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"]) < 1e-3
    else:  # both as imaged
        assert not a["mirrored"] and not b["mirrored"]
    off = infer_image(img, reg.pixel_size_A, reg, InferenceSettings(whole_image_crops=1, decide_hand=False)).record
    assert "hand" not in off and off["mirrored"] is False


def test_the_mirror_hand_is_kept_only_when_its_features_fit_clearly_better():
    from vdwstack.infer.reading import HAND_MARGIN, _hand_record

    def hands(as_is, mirrored):
        return [(False, None, None, as_is), (True, None, None, mirrored)]

    assert _hand_record(hands(1.0, 0.3)) == {"residual_as_is": 1.0, "residual_mirrored": 0.3, "decided": True,
                                             "mirrored": True}
    assert _hand_record(hands(0.3, 1.0))["mirrored"] is False and _hand_record(hands(0.3, 1.0))["decided"]
    close = _hand_record(hands(1.0, 1.0 / HAND_MARGIN + 0.01))  # mirror a little better: not enough
    assert close["decided"] is False and close["mirrored"] is False
    assert _hand_record([(False, None, None, None)]) is None  # achiral lattice: one hand only


def test_achiral_lattices_are_read_as_imaged_only(models):
    img = simulate_row(make_row("MoS2", size=160, pixel_size_A=0.12, theta_deg=10.0))
    rec = infer_image(img, 0.12, Regressor(models["twist"]), InferenceSettings(whole_image_crops=1)).record
    assert "hand" not in rec and rec["mirrored"] is False
    # a twist reading names its partner alignment (60° − θ) and whether the features decide between them
    assert rec["alignment"]["theta_partner_deg"] == pytest.approx(60.0 - rec["theta_deg"], abs=1e-3)
    assert isinstance(rec["alignment"]["decided"], bool)


def test_two_domains_a_spurious_window_and_the_located_boundary():
    """Potts regularisation keeps one odd window out of the domains; the boundary's straight-step
    fit puts it where the features change, with a width and an uncertainty."""
    from vdwstack.infer.domains import locate_boundaries
    from vdwstack.regress.encoding import SlipEncoding

    sym, enc = symmetry_for("MoS2"), SlipEncoding("MoS2")
    R, C, stride = 12, 16, 4.0
    ab = stacking_names("MoS2")["AB/BA"]
    x = (np.arange(C) + 0.5) * stride
    edge_A = 7.3 * stride  # true boundary at x = 29.2 Å: between window columns 6 and 7
    frac = 0.5 * (1 + np.tanh((x - edge_A) / 3.0))  # a boundary a few Å wide, seen through windows
    fa, fb = enc.encode(0.0, 0.0), enc.encode(*ab)
    feats = (1 - frac)[None, :, None] * fa + frac[None, :, None] * fb + np.zeros((R, 1, 1))
    rng = np.random.default_rng(0)
    feats = feats + rng.normal(0, 0.03, feats.shape)
    feats[3, 2] = enc.encode(1.2, 0.4)  # one odd window inside domain AA

    def decode(f):
        a, b = enc.decode(f)
        return {"Da_A": a, "Db_A": b}

    def dist(a, b):
        return sym.slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"])

    labels, masks = segment_domains(feats, decode, dist, 0.35, 1.0, 1.0, 12)
    assert len(masks) == 2, "the odd window made a domain of its own"
    assert len(np.unique(labels[:, :5])) == 1 and labels[0, 0] != labels[0, -1]
    b = domain_boundaries(labels)
    assert b[:, 5:8].any(axis=1).all() and not b[:, :4].any()
    xy = np.stack(np.meshgrid(x, (np.arange(R) + 0.5) * stride), axis=-1)
    (fit,) = locate_boundaries(feats, labels, xy, window_A=12.0, stride_A=stride)
    assert fit["domains"] == [0, 1]
    normal = np.deg2rad(fit["normal_deg"])
    assert abs(np.cos(normal)) > 0.99  # the boundary runs along y
    position = fit["offset_A"] / np.cos(normal)
    assert abs(position - edge_A) < 1.0 and 1.2 <= fit["position_sigma_A"] < 3.0  # ≥ the 0.1·W systematic
    assert 0 <= fit["width_A"] < 10 and np.isfinite(fit["width_sigma_A"])


def test_a_band_along_a_boundary_is_not_a_domain_but_a_real_stripe_is():
    """Windows straddling a boundary decode to some third stacking (the network's response to a
    crop of two stackings): a band of them, narrower than a window, joins the two domains it
    separates; a stripe of that stacking wider than a window stays a domain of its own."""
    from vdwstack.regress.encoding import SlipEncoding

    sym, enc = symmetry_for("MoS2"), SlipEncoding("MoS2")
    ab = stacking_names("MoS2")["AB/BA"]
    fa, fb, fx = enc.encode(0.0, 0.0), enc.encode(*ab), enc.encode(1.2, 0.4)

    def decode(f):
        a, b = enc.decode(f)
        return {"Da_A": a, "Db_A": b}

    def dist(a, b):
        return sym.slip_error_A(a["Da_A"], a["Db_A"], b["Da_A"], b["Db_A"])

    def grid(third_cols):
        cols = np.array([fx if c in third_cols else (fa if c < min(third_cols) else fb) for c in range(24)])
        return cols[None] + np.random.default_rng(1).normal(0, 0.03, (14, 24, len(fa)))

    band = grid(range(11, 13))  # 2 windows (8 Å) of mixed crops; windows of 12 Å at a 4 Å stride
    labels, masks = segment_domains(band, decode, dist, 0.35, 1.0, 1.0, 12)
    assert len(masks) == 3, "without the window size the band is a domain"
    labels, masks = segment_domains(band, decode, dist, 0.35, 1.0, 1.0, 12, window_windows=3.0)
    assert len(masks) == 2
    assert len(np.unique(labels[:, :11])) == 1 and len(np.unique(labels[:, 13:])) == 1
    assert labels[0, 0] != labels[0, -1]
    stripe = grid(range(8, 16))  # 32 Å of a third stacking: a real domain
    labels, masks = segment_domains(stripe, decode, dist, 0.35, 1.0, 1.0, 12, window_windows=3.0)
    assert len(masks) == 3 and len(np.unique(labels[:, 8:16])) == 1


def test_stacking_names():
    a = 3.16
    sym = symmetry_for("MoS2")
    da, db = sym.cartesian_to_slip(np.array([0.0, -a / np.sqrt(3)]))  # BA ≡ AB under D ≡ −D
    assert name_stacking("MoS2", float(da), float(db)) == "AB/BA"
    assert name_stacking("MoS2", 0.02, -0.03) == "AA"
    assert name_stacking("ReS2", 0.0, 0.05) == "AA"
    assert name_stacking("ReS2", 1.5, 1.0) == "other"


def test_atomic_model_holds_the_reading_and_its_mirror():
    atoms = reading_atoms("MoS2", 2, {"Da_A": 1.0, "Db_A": 0.0}, size_A=20.0)
    mirror = reading_atoms("ReS2", 2, {"Da_A": 1.0, "Db_A": 0.5}, size_A=20.0, mirrored=True)
    plain = reading_atoms("ReS2", 2, {"Da_A": 1.0, "Db_A": 0.5}, size_A=20.0)
    np.testing.assert_allclose(mirror.positions[:, 0], 20.0 - plain.positions[:, 0])
    assert mirror.info["mirrored"] is True and plain.info["mirrored"] is False
    tags = atoms.get_tags()
    assert set(tags) == {1, 2} and set(atoms.get_chemical_symbols()) == {"Mo", "S"}
    mo1 = atoms.positions[(tags == 1) & (atoms.numbers == 42), :2]
    mo2 = atoms.positions[(tags == 2) & (atoms.numbers == 42), :2]
    # Every top-layer Mo sits 1.0 Å along a from some bottom-layer Mo (modulo the lattice).
    d = mo2[:, None] - mo1[None]
    assert np.min(np.linalg.norm(d - np.array([1.0, 0.0]), axis=-1), axis=1).max() < 1e-6 or \
        np.min(np.linalg.norm(d + np.array([1.0, 0.0]), axis=-1), axis=1).max() < 1e-6


def test_infer_to_files_json_models_and_truth(models, res2_tif, tmp_path):
    rec = infer_to_files(res2_tif, "res2", "ReS2", 2, "slip", None, {"slip": models["slip"]},
                         {"window_A": 6.0, "stride_A": 3.0, "whole_image_crops": 4}, tmp_path / "out", on_error="raise")
    out = tmp_path / "out"
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["pixel_size_source"] == "metadata"
    slip = on_disk["results"]["slip"]
    assert np.array(slip["maps"]["Da_A"]).shape == (slip["map"]["rows"], slip["map"]["cols"])
    assert "dD_A" in on_disk["errors_vs_truth"] and on_disk["truth"]["Da_A"] == 1.0
    assert not list(out.glob("model*"))  # atomic models are of final readings (closed loop), not proposals
    assert set(np.load(out / "maps.npz").files) >= {"image", "slip_Da_A", "slip_Db_A", "slip_domains"}
    assert rec["results"]["slip"]["n_domains"] >= 1


@pytest.mark.parametrize("content,material,message", [
    (b"\x89PNG\r\n\x1a\n broken", "ReS2", "cannot read image"),
    (None, "ReS2", "constant"),
    (b"", "MoTe3", "MoTe3"),
])
def test_bad_image_becomes_an_error_record(models, tmp_path, content, material, message):
    path = tmp_path / "bad.png"
    if content is None:
        from PIL import Image

        Image.fromarray(np.full((64, 64), 7, np.uint8)).save(path)
    else:
        path.write_bytes(content)
    (tmp_path / "other").mkdir()
    keep = tmp_path / "other" / "result.json"
    keep.write_text('{"untouched": true}')
    rec = infer_to_files(path, "bad", material, 2, "slip", 0.1, {"slip": models["slip"]}, None, tmp_path / "bad")
    assert rec["status"] == "error" and message in rec["error"]
    assert json.loads((tmp_path / "bad" / "result.json").read_text())["status"] == "error"
    assert keep.read_text() == '{"untouched": true}'
    with pytest.raises(ValueError, match=message):
        infer_to_files(path, "bad", material, 2, "slip", 0.1, {"slip": models["slip"]}, None, tmp_path / "b2",
                       on_error="raise")


def test_missing_model_for_material_leaves_the_reading_to_the_search(tmp_path, res2_tif):
    rec = infer_to_files(res2_tif, "x", "ReSe2", 2, "slip", None, {"slip": None}, None, tmp_path / "x")
    assert rec["status"] == "ok" and rec["results"]["slip"]["model"] is None
    assert "no trained slip model for 2-layer ReSe2" in rec["results"]["slip"]["message"]


def test_cli_infer_json(models, res2_tif, tmp_path, capsys):
    rc = cli_main(["infer", str(res2_tif), "--material", "ReS2", "--task", "slip", "--models", str(models["slip"]),
                   "--window", "6", "--stride", "3", "--out", str(tmp_path / "cli"), "--threads", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"Da_A", "Db_A", "uncertainty_A", "pixel_size_A", "pixel_size_source", "agreement", "source",
            "mirrored", "network_Da_A", "network_Db_A"} <= set(out)
    assert out["pixel_size_source"] == "metadata" and out["pixel_size_A"] == pytest.approx(0.1)
    assert out["status"] == "ok" and out["source"] in ("network", "refined", "search")
    assert (tmp_path / "cli" / "res2" / "reading.json").exists() and (tmp_path / "cli" / "res2" / "model.cif").exists()
    assert (tmp_path / "cli" / "summary.tsv").exists()


def test_report_html_lists_every_image_and_opens_in_a_browser(models, res2_tif, tmp_path):
    rec = infer_to_files(res2_tif, "res2", "ReS2", 2, "slip", None, {"slip": models["slip"]},
                         {"window_A": 6.0, "stride_A": 3.0, "whole_image_crops": 4}, tmp_path / "res2")
    bad = {"image_id": "broken", "material": "ReS2", "task": "slip", "status": "error", "error": "ValueError: x"}
    html = write_report([rec, bad], {"res2": tmp_path / "res2" / "maps.npz"}, tmp_path / "report")
    text = html.read_text()
    assert "res2" in text and "broken" in text and "ValueError: x" in text and "data:image/png;base64" in text
    assert (tmp_path / "report" / "summary.tsv").read_text().count("\n") == 3
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium for the screenshot")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                    f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_shared_experimental_images_load_and_mos2_scale_is_found(root):
    folder = root.parent / "shared" / "data" / "experimental"
    if not folder.is_dir():
        pytest.skip("../shared/data/experimental not present")
    files = sorted(folder.glob("*.png"))
    assert len(files) == 9
    for f in files:
        img, p = read_image(f)
        assert img.ndim == 2 and min(img.shape) >= 256 and p is None
    img, _ = read_image(folder / "MoS2_twisted_bilayer.png")
    est = estimate_pixel_size(img, "MoS2")
    # 12 first-order spots ~10 px from the centre of the 1024² spectrum: d(100) = 2.74 Å ≈ 100 px.
    assert 0.02 < est.pixel_size_A < 0.035 and est.spot_contrast > 2


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, suffix):
    path = tmp_path / f"bomb{suffix}"
    big = np.zeros((3000, 3000), np.uint8)  # compresses to a few kB
    big[::7, ::5] = 1
    if suffix == ".png":
        from PIL import Image

        Image.fromarray(big).save(path, optimize=True)
    else:
        import tifffile

        tifffile.imwrite(path, big, compression="zlib")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"bomb\.(png|tif).*over the limit.*decompression bomb"):
        read_image(path, max_pixels=1_000_000)
    arr, _ = read_image(path)  # within the default limit it reads
    assert arr.shape == (3000, 3000)


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (None, "constant")])
def test_nonfinite_and_constant_images_name_the_file(tmp_path, bad, match):
    import tifffile

    img = np.ones((64, 64), np.float32)
    if bad is not None:
        img[3, 4] = bad
    path = tmp_path / "frame_07.tif"
    tifffile.imwrite(path, img)
    with pytest.raises(ValueError, match=f"frame_07.tif.*{match}"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".emd", ".mrc"])
def test_microscope_file_declaring_a_huge_array_is_refused_before_reading(tmp_path, suffix):
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".emd":
        import h5py

        # A compressed HDF5 dataset of 40000² values that were never written: a file of a few kB.
        with h5py.File(path, "w") as f:
            f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
            g = f.create_group("data/bomb")
            g.attrs["emd_group_type"] = 1
            g.create_dataset("data", shape=(40000, 40000), dtype="f4", chunks=(1000, 1000), compression="gzip")
    else:
        header = np.zeros(256, np.int32)
        header[:4] = (40000, 40000, 1, 2)
        path.write_bytes(header.tobytes() + np.zeros(64, np.float32).tobytes())
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=rf"bomb\{suffix}: header declares .*over the limit"):
        read_image(path, max_pixels=10**8)
