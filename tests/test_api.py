"""The Python API (vdwstack.read_stacking) and the batch `vdwstack infer`: the README's example runs,
arrays and HyperSpy signals carry their pixel size, results have values, intervals, maps, figures
and models, and a batch goes on past a bad file."""

import json
import re

import numpy as np
import pandas as pd
import pytest

import vdwstack as vs
from helpers import untrained_model
from vdwstack.cli import main as cli_main
from vdwstack.core.io import write_tiff
from vdwstack.structures.symmetry import symmetry_for

# Fast closed-loop settings: the plumbing, not the accuracy, is tested here.
FAST = {"max_evaluations": 25, "search_peaks": 1, "defocus_A": [35], "fit_astigmatism": False,
        "fit_distortion": False, "max_domains": 1}
MAPS = {"window_A": 6.0, "stride_A": 3.0, "whole_image_crops": 4, "tta_rotations": 1}


def test_public_names_are_listed():
    assert {"read_stacking", "StackingResult", "simulate_image"} <= set(vs.__all__)
    for name in vs.__all__:
        assert getattr(vs, name) is not None


def test_readme_python_example_runs(root, tmp_path, monkeypatch):
    text = (root / "README.md").read_text()
    block = re.search(r"<!-- api-example:start -->\s*```python\n(.*?)```\s*<!-- api-example:end -->", text, re.S)
    assert block, "README lost its Python example"
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    r = ns["r"]
    assert r.status == "ok" and r.pixel_size_source == "user" and r.pixel_size_A == pytest.approx(0.1)
    # The physics search alone finds the simulated slip (1.0, 0.4) Å within its interval.
    err = float(symmetry_for("ReS2").slip_error_A(r.values["Da_A"], r.values["Db_A"], 1.0, 0.4))
    assert err < max(r.uncertainty["slip_A"], 0.05)
    assert r.hand in ("as imaged", "mirrored", "undecided")
    assert ns["record"]["readings"]["slip"]["uncertainty"] == r.uncertainty["slip_A"]
    json.dumps(ns["record"])  # JSON-ready
    assert (tmp_path / "reading.cif").stat().st_size > 0 and len(ns["atoms"]) > 10
    assert ns["fig"].axes and (r.folder / "input.tif").exists()


@pytest.fixture(scope="module")
def res2_image():
    return vs.simulate_image("ReS2", slip_A=(1.0, 0.4), pixel_size_A=0.1, size_px=160, rotation_deg=30)


def test_signal2d_calibration_maps_plot_and_atoms(tmp_path, res2_image):
    hs = pytest.importorskip("hyperspy.api")
    from matplotlib_scalebar.scalebar import ScaleBar

    sig = hs.signals.Signal2D(res2_image)
    sig.metadata.General.title = "HAADF"
    for ax in sig.axes_manager.signal_axes:
        ax.scale, ax.units = 0.01, "nm"  # 0.1 Å/px
    model = untrained_model(tmp_path / "models", "slip", "ReS2")
    r = vs.read_stacking(sig, material="ReS2", task="slip", models=model, out=tmp_path / "sig",
                         infer=MAPS, closed_loop=FAST)
    assert r.pixel_size_source == "metadata" and r.pixel_size_A == pytest.approx(0.1)
    assert r.status in ("ok", "no_match") and r.folder == tmp_path / "sig"
    assert r.maps["slip_Da_A"].ndim == 2 and r.maps["slip_Da_A"].shape == r.maps["slip_domains"].shape
    assert r.readings["slip"].network is not None and "Da_A" in r.readings["slip"].network
    fig = r.plot()
    assert len(fig.axes) >= 2
    assert all(any(isinstance(a, ScaleBar) for a in ax.artists) for ax in fig.axes if ax.images and
               ax.get_label() != "<colorbar>")
    if r.status == "ok":
        atoms = r.atoms()
        assert atoms.info["mirrored"] == r.readings["slip"].mirrored and len(atoms) > 10


def test_array_needs_a_pixel_size_or_a_lattice_and_errors_name_the_field(tmp_path):
    noise = np.random.default_rng(0).random((128, 128))
    with pytest.raises(ValueError, match="no ReS2 lattice"):  # no pixel size, and nothing to estimate it from
        vs.read_stacking(noise, material="ReS2", models=None, out=tmp_path / "n")
    with pytest.raises(ValueError, match="Unobtainium"):
        vs.read_stacking(noise, material="Unobtainium", pixel_size_A=0.1, models=None)
    with pytest.raises(ValueError, match="task"):
        vs.read_stacking(noise, material="ReS2", task="shear", pixel_size_A=0.1, models=None)
    with pytest.raises(ValueError, match="pixel_size_A"):
        vs.read_stacking(noise, material="ReS2", pixel_size_A=-1, models=None)
    with pytest.raises(ValueError, match="2-D"):
        vs.read_stacking(np.zeros((2, 64, 64)), material="ReS2", pixel_size_A=0.1, models=None, out=tmp_path / "3d")
    bad = noise.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vs.read_stacking(bad, material="ReS2", pixel_size_A=0.1, models=None, out=tmp_path / "nan")
    with pytest.raises(FileNotFoundError, match="models"):
        vs.read_stacking(noise, material="ReS2", pixel_size_A=0.1, models=tmp_path / "nowhere")


def test_batch_cli_bad_config_value_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("closed_loop: {min_agreement: 7}\n")
    rc = cli_main(["infer", str(tmp_path / "x.tif"), "--material", "ReS2", "--task", "slip", "--config", str(bad),
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "min_agreement" in capsys.readouterr().err


def test_batch_cli_reads_every_image_and_lists_the_failure(tmp_path, res2_image, capsys):
    data = tmp_path / "data"
    (data / "more").mkdir(parents=True)
    write_tiff(data / "a.tif", res2_image, 0.1)
    write_tiff(data / "more" / "a.tif", np.rot90(res2_image).copy(), 0.1)  # same name, other folder
    (data / "broken.dm4").write_bytes(b"not a DigitalMicrograph file" * 20)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    model = untrained_model(tmp_path / "models", "slip", "ReS2")
    out = tmp_path / "out"
    settings = tmp_path / "settings.yaml"
    settings.write_text(json.dumps({"infer": MAPS, "closed_loop": FAST}))  # JSON is YAML
    rc = cli_main(["infer", str(data / "a.tif"), str(data / "broken.dm4"), str(data / "more" / "*.tif"),
                   "--material", "ReS2", "--task", "slip", "--models", str(model), "--config", str(settings),
                   "--out", str(out), "--threads", "1", "--json"])
    assert rc == 1  # one image failed
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [ln["status"] for ln in lines][1] == "error" and len(lines) == 3
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert len(summary) == 3
    failed = summary[summary["image"].str.endswith("broken.dm4")]
    assert failed["status"].item() == "error" and "broken.dm4" in failed["error"].item()
    good = summary[summary["status"] != "error"]
    assert len(good) == 2 and good["pixel_size_source"].eq("metadata").all()
    assert {p.name for p in out.iterdir()} >= {"a", "a_2", "broken", "summary.tsv"}
    assert (out / "a" / "reading.json").exists() and (out / "a_2" / "reading.json").exists()
    # Nothing written beside the data.
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_batch_cli_unknown_material_fails_before_any_image(tmp_path, capsys):
    rc = cli_main(["infer", str(tmp_path / "x.tif"), "--material", "Kryptonite", "--task", "slip",
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "Kryptonite" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
