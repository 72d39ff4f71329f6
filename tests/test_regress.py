"""Regressors, synthesis and evaluation on tiny data."""

import json
import pickle

import numpy as np
import pytest
import torch

from helpers import make_row
from vdwstack.regress.augment import Augmentation, augment
from vdwstack.drit.networks import Drit, DritArchitecture
from vdwstack.core.torch_utils import autocast_dtype, load_weights_only
from vdwstack.drit.training import export_translator
from vdwstack.regress.evaluate import constant_slip_baseline, evaluate_slip, evaluate_twist
from vdwstack.core.io import open_image_dataset, write_image_dataset
from vdwstack.regress.model import Regressor, TargetCodec, build_resnet
from vdwstack.regress.training import RegressorConfig, TrainingData, lr_factor, train_regressor
from vdwstack.regress.stage import train_from_dataset
from vdwstack.simulate.render import simulate_rows
from vdwstack.structures.enumeration import enumerate_dataset
from vdwstack.structures.symmetry import TRILAYER_ORDERS, symmetry_for
from vdwstack.synthesize.stage import synthesize_dataset

TINY = {"architecture": "resnet18", "crop_px": 48, "batch_size": 4, "steps": 6, "lr": 1e-3, "warmup_steps": 2,
        "checkpoint_every": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """Small clean slip and twist datasets (64 px)."""
    base = tmp_path_factory.mktemp("sets")
    out = {}
    for name, spec in {
        "slip": {"material": "ReS2", "slip_step_A": 1.2, "pixel_size_A": 0.12, "image_size_px": 64},
        "twist": {"material": "MoS2", "twist_deg": [1, 8, 20, 45], "pixel_size_A": 0.12, "image_size_px": 64},
    }.items():
        table = enumerate_dataset(name, spec, seed=1, realism={"random_rotation": True})
        imgs = simulate_rows(table.to_dict("records"))
        write_image_dataset(base / f"{name}.zarr", table, [(0, imgs)], {"dataset": name})
        out[name] = base / f"{name}.zarr"
    return out


def test_codec_round_trip_and_trilayer():
    codec = TargetCodec("slip", "ReS2", layers=3)
    labels = {"Da_A": np.array([1.0, -2.0]), "Db_A": np.array([0.5, 0.3]), "Da2_A": np.array([0.2, 1.7]),
              "Db2_A": np.array([-0.4, 2.0])}
    f = codec.encode(labels)
    assert f.shape == (2, codec.dim)
    back = codec.decode(f)
    sym = symmetry_for("ReS2")
    keys = ["Da_A", "Db_A", "Da2_A", "Db2_A"]
    truth = [labels[k] for k in keys]
    assert sym.trilayer_slip_error_A([back[k] for k in keys], truth, any_order=True).max() < 1e-4
    # The same three layer positions stacked in any order along the beam: one target (the
    # projection barely tells the orders apart; the closed loop fits them) ...
    pair = np.stack([np.stack([labels["Da_A"], labels["Db_A"]], -1), np.stack([labels["Da2_A"], labels["Db2_A"]], -1)], 1)
    for i, L in enumerate(TRILAYER_ORDERS):
        (a1, b1), (a2, b2) = np.moveaxis(np.einsum("ij,njk->nik", L, pair), 0, -1)
        other = {"Da_A": a1, "Db_A": b1, "Da2_A": a2, "Db2_A": b2}
        np.testing.assert_allclose(codec.encode(other), f, atol=1e-6)
        if i not in (0, 5):  # ... a different reading where the order counts (5: the stack seen from below)
            assert sym.trilayer_slip_error_A([other[k] for k in keys], truth).max() > 0.3
    # ... but one slip negated moves a layer: another trilayer, which the joint targets tell apart
    # (features of each slip alone could not).
    one_negated = {**labels, "Da2_A": -labels["Da2_A"], "Db2_A": -labels["Db2_A"]}
    assert np.abs(codec.encode(one_negated) - f).max(axis=1).min() > 0.1
    assert sym.trilayer_slip_error_A([one_negated[k] for k in keys], truth, any_order=True).min() > 0.3
    noisy = codec.decode(f + np.random.default_rng(0).normal(0, 0.01, f.shape))
    assert sym.trilayer_slip_error_A([noisy[k] for k in keys], truth, any_order=True).max() < 0.05


def test_resnet_shapes_and_schedule():
    for arch in ("resnet18", "resnet34"):
        net = build_resnet(arch, 7)
        assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 7)
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="regress.architecture"):
        RegressorConfig.from_mapping({"architecture": "vgg"})


def test_augment_keeps_shape_and_range():
    img = simulate_rows([make_row("ReS2", size=96)])[0]
    rng = np.random.default_rng(0)
    outs = [augment(img, 0.1, 48, Augmentation(), rng) for _ in range(5)]
    assert all(o.shape == (48, 48) and o.dtype == np.float32 and o.min() >= -1 and o.max() <= 1 for o in outs)
    assert np.std([o.mean() for o in outs]) > 0  # random


def test_tiny_training_lowers_loss_and_resumes(tiny_sets, tmp_path):
    root, labels = open_image_dataset(tiny_sets["slip"])
    codec = TargetCodec("slip", "ReS2")
    data = TrainingData(root["images"][:], {c: labels[c].to_numpy() for c in labels.columns if c != "sample_id"},
                        codec, 0.12, 48, Augmentation.off(), raw_intensity=True)
    cfg = RegressorConfig.from_mapping({**TINY, "steps": 40, "lr": 3e-3, "checkpoint_every": 20})
    torch.manual_seed(0)
    _, steps = train_regressor(data, cfg, tmp_path / "m", progress=False, stop_after=20)
    assert steps == 20
    (tmp_path / "m" / "losses.csv").unlink()  # Snakemake removes a job's outputs before a rerun
    _, steps = train_regressor(data, cfg, tmp_path / "m", progress=False)  # resumes at 20
    assert steps == 40
    loss = np.loadtxt(tmp_path / "m" / "losses.csv", delimiter=",", skiprows=1, usecols=2)
    assert len(loss) == 40 and loss[-10:].mean() < loss[:5].mean()
    steps_logged = np.loadtxt(tmp_path / "m" / "losses.csv", delimiter=",", skiprows=1, usecols=0)
    assert (steps_logged == np.arange(1, 41)).all()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps({"x": Exception("boom")}))
    with pytest.raises(ValueError, match="refused to load"):
        load_weights_only(bad)


def test_pipeline_export_predict_and_evaluate(tiny_sets, tmp_path):
    card = train_from_dataset(tiny_sets["slip"], TINY, "slip", tmp_path / "slip", progress=False)
    assert card["encoding"]["task"] == "slip" and card["input"]["pixel_size_A"] == pytest.approx(0.12)
    # The decoding weights: one per feature, mean 1, from the residuals on the training images.
    dec = json.loads((tmp_path / "slip" / "card.json").read_text())["decoding"]
    w, rms = np.array(dec["feature_weights"]), np.array(dec["residual_rms"])
    assert w.shape == rms.shape == (card["encoding"]["dim"],) and w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w, (1 / rms**2) / (1 / rms**2).mean(), rtol=1e-6)
    reg = Regressor(tmp_path / "slip")
    np.testing.assert_allclose(reg.codec.feature_weights, w)
    root, labels = open_image_dataset(tiny_sets["slip"])
    imgs = root["images"][:]
    pred = reg.predict(imgs, 0.12)
    assert pred["Da_A"].shape == (len(imgs),)
    assert symmetry_for("ReS2").is_canonical(pred["Da_A"], pred["Db_A"], tol_A=1e-6).all()
    # Any pixel size: inputs are rescaled to the model's.
    from scipy.ndimage import zoom

    assert reg.predict(np.stack([zoom(i, 1.25) for i in imgs[:2]]), 0.12 / 1.25)["Da_A"].shape == (2,)
    # Mixed-precision inference (the default where the CPU has bf16) reads the features of fp32 to
    # within bf16's rounding: the head runs in fp32, only the convolutions round.
    f_amp = reg.predict_features(imgs, 0.12, tta_rotations=4)
    f_32 = Regressor(tmp_path / "slip", mixed_precision=False).predict_features(imgs, 0.12, tta_rotations=4)
    assert f_amp.dtype == np.float32 and f_amp.shape == f_32.shape
    assert np.abs(f_amp - f_32).max() < 0.05 * max(np.abs(f_32).max(), 1e-3)
    res = evaluate_slip({"grid": tmp_path / "slip"}, tiny_sets["slip"], tmp_path / "eval", noise_levels=(0, 0.3),
                        contamination_blobs=(0, 2))
    m = res["models"]["grid"]
    assert {"mean", "median", "p95", "within_0.05_A", "robustness", "centre_crop", "single_crop"} <= set(m)
    assert m["tta_positions"] == 4
    assert len(m["robustness"]["noise"]) == 2 and "baseline_constant" in res
    assert json.loads((tmp_path / "eval" / "slip.json").read_text())["n_test"] == len(imgs)
    assert (tmp_path / "eval" / "slip_boxplot.png").exists()
    twist_card = train_from_dataset(tiny_sets["twist"], TINY, "twist", tmp_path / "twist", progress=False)
    assert "decoding" not in twist_card  # the twist's three harmonics are decoded unweighted
    tw = evaluate_twist(tmp_path / "twist", tiny_sets["twist"], tmp_path / "eval")
    assert {"model_mae_deg", "fft_mae_deg", "below_3deg", "per_theta", "centre_crop_mae_deg", "alignment"} <= set(tw)
    assert tw["alignment"]["n_undecided"] == tw["alignment"]["n_wrong_undecided"] + tw["alignment"]["n_right_undecided"]
    theta = np.array([r["theta_deg"] for r in tw["per_theta"]])  # the AA′-like side's small twists apart
    assert tw["within_3deg_of_max"]["twist_max_deg"] == 60.0
    assert tw["below_3deg"]["n"] + tw["within_3deg_of_max"]["n"] <= tw["n_test"]
    assert (tw["within_3deg_of_max"]["model_mae_deg"] is None) == (not np.any(theta > 57.0))
    assert (tmp_path / "eval" / "twist_mae.png").exists()
    # With the inference's mirrored views (infer.tta_mirror, passed by the workflow) the headline is the
    # reading of every crop and its flip; ReS2 has no mirror line, so its slip evaluation says it used none.
    assert tw["tta_mirror"] is False and m["tta_mirror"] is False
    tw_m = evaluate_twist(tmp_path / "twist", tiny_sets["twist"], tmp_path / "eval_mirror", tta_mirror=True)
    reg_t = Regressor(tmp_path / "twist")
    root_t, labels_t = open_image_dataset(tiny_sets["twist"])
    feats = reg_t.predict_features(root_t["images"][:], 0.12, tta_rotations=4, tta_fields=4, tta_positions=4,
                                   tta_mirror=True)
    sym_t = symmetry_for("MoS2")
    err = sym_t.twist_error_deg(reg_t.codec.twist.decode(feats), sym_t.fold_twist(labels_t["theta_deg"].to_numpy()))
    assert tw_m["tta_mirror"] is True and tw_m["model_mae_deg"] == pytest.approx(float(err.mean()))
    res_m = evaluate_slip({"grid": tmp_path / "slip"}, tiny_sets["slip"], tmp_path / "eval_mirror", noise_levels=(0,),
                          contamination_blobs=(0,), tta_mirror=True)
    assert res_m["models"]["grid"]["tta_mirror"] is False
    assert res_m["models"]["grid"]["mean"] == pytest.approx(m["mean"])


def test_constant_baseline_is_the_best_constant():
    sym = symmetry_for("ReS2")
    da, db = sym.slip_grid(0.6)
    base = constant_slip_baseline(sym, da, db).mean()
    assert base <= sym.slip_error_A(0.0, 0.0, da, db).mean() + 1e-9
    assert base > 0.5  # a constant cannot read slips


def test_synthesize_copies_labels(tiny_sets, tmp_path):
    arch = DritArchitecture(nf=4, nz=2, n_res=1, disc_scales=1, disc_layers=2)
    export_translator(Drit(arch), tmp_path, {"input": {"pixel_size_A": 0.12, "train_crop_px": 32},
                                             "training": {"fingerprint": "x"}})
    out = tmp_path / "syn.zarr"
    synthesize_dataset(tiny_sets["slip"], tmp_path, "unused.tsv", out, style_draws=2, style_source="prior",
                       device="cpu", progress=False)
    root, labels = open_image_dataset(out)
    src_root, src = open_image_dataset(tiny_sets["slip"])
    assert root["images"].shape[0] == 2 * src_root["images"].shape[0]
    np.testing.assert_allclose(labels["Da_A"].to_numpy()[::2], src["Da_A"].to_numpy())
    assert root.attrs["style_draws"] == 2 and "normalized" in root.attrs["intensity_unit"]
    # The spread of the draws is measured, not assumed: it is the rms difference of draw 1 from draw 0.
    imgs = np.asarray(root["images"][:16])
    expected = np.mean([np.sqrt(np.mean((imgs[2 * i + 1] - imgs[2 * i]) ** 2)) / imgs[2 * i].std() for i in range(8)])
    assert root.attrs["style_draw_spread"] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="style_draws"):
        synthesize_dataset(tiny_sets["slip"], tmp_path, "unused.tsv", out, style_draws=0)


def test_synthesize_mixed_precision_matches_fp32(tiny_sets, tmp_path):
    """bf16 translation (where the CPU has it) stays within a few % of the fp32 images: the same
    seed draws the same codes, only the arithmetic's precision differs."""
    torch.manual_seed(0)
    export_translator(Drit(DritArchitecture(nf=8, nz=2, n_res=1, disc_scales=1, disc_layers=2)), tmp_path,
                      {"input": {"pixel_size_A": 0.12, "train_crop_px": 32}, "training": {"fingerprint": "x"}})
    images = {}
    for amp in (False, True):
        out = tmp_path / f"syn_{amp}.zarr"
        synthesize_dataset(tiny_sets["slip"], tmp_path, "unused.tsv", out, style_draws=1, style_source="prior",
                           device="cpu", mixed_precision=amp, progress=False, seed=4)
        root, _ = open_image_dataset(out)
        images[amp] = np.asarray(root["images"][:])
        expected = "bfloat16" if amp and autocast_dtype(torch.device("cpu"), True) else "float32"
        assert root.attrs["precision"] == expected
    assert images[True].dtype == np.float32
    assert np.abs(images[True] - images[False]).std() < 0.03 * images[False].std()


def test_changed_settings_do_not_resume_old_checkpoints(tiny_sets, tmp_path):
    train_from_dataset(tiny_sets["slip"], TINY, "slip", tmp_path / "m", progress=False)
    n1 = len((tmp_path / "m" / "losses.csv").read_text().splitlines())
    assert n1 == 7
    # Another step count: starts afresh (the learning-rate schedule spans the run), both ways — a
    # longer run is not continued, and a checkpoint past fewer steps is not published as that run.
    card = train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 8}, "slip", tmp_path / "m", progress=False)
    assert card["training"]["steps"] == 8
    assert len((tmp_path / "m" / "losses.csv").read_text().splitlines()) == 9
    fresh = train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 5}, "slip", tmp_path / "m5", progress=False)
    card = train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 5}, "slip", tmp_path / "m", progress=False)
    assert card["training"]["steps"] == 5
    assert len((tmp_path / "m" / "losses.csv").read_text().splitlines()) == 6
    assert card["metrics"] == fresh["metrics"]  # the same model a fresh run of that config gives
    # Another learning rate: starts afresh.
    card = train_from_dataset(tiny_sets["slip"], {**TINY, "lr": 5e-4}, "slip", tmp_path / "m", progress=False)
    assert card["training"]["steps"] == 6
    assert len((tmp_path / "m" / "losses.csv").read_text().splitlines()) == 7


def test_deterministic_training_gives_identical_weights(tiny_sets, tmp_path, request):
    root, labels = open_image_dataset(tiny_sets["slip"])
    data = TrainingData(root["images"][:], {c: labels[c].to_numpy() for c in labels.columns if c != "sample_id"},
                        TargetCodec("slip", "ReS2"), 0.12, 48, Augmentation(), raw_intensity=True)
    cfg = RegressorConfig.from_mapping({**TINY, "steps": 6, "deterministic": True, "seed": 3})
    request.addfinalizer(lambda: torch.use_deterministic_algorithms(False))  # process-wide switch
    runs = [train_regressor(data, cfg, tmp_path / f"run{i}", progress=False)[0].state_dict() for i in range(2)]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = train_regressor(data, RegressorConfig.from_mapping({**TINY, "steps": 6, "deterministic": True, "seed": 4}),
                            tmp_path / "seed4", progress=False)[0].state_dict()
    assert not all(torch.equal(runs[0][k], other[k]) for k in runs[0])


def test_own_pixel_size_and_variable_field(tiny_sets, tmp_path):
    """A model at its own pixel size (the dataset rescaled once) trained on fields of several sizes
    reads images smaller than its full field, and refuses (naming the sizes) below its smallest."""
    settings = {**TINY, "pixel_size_A": 0.18, "crop_px": 36, "min_crop_px": 32, "steps": 4}
    card = train_from_dataset(tiny_sets["twist"], settings, "twist", tmp_path / "m", progress=False)
    assert card["input"]["pixel_size_A"] == 0.18 and card["input"]["dataset_pixel_size_A"] == 0.12
    assert card["input"]["min_crop_px"] == 32 and card["input"]["field_of_view_A"] == pytest.approx(36 * 0.18)
    reg = Regressor(tmp_path / "m")
    assert reg.crop_for((60, 50)) == 36 and reg.crop_for((34, 70)) == 32
    root, _ = open_image_dataset(tiny_sets["twist"])
    imgs = root["images"][:]  # 64 px at 0.12 Å/px = 43 px at the model's 0.18 Å/px: the full field
    small = imgs[:, :48, :48]  # 32 px there: the smallest field
    full, part = reg.predict(imgs, 0.12)["theta_deg"], reg.predict(small, 0.12)["theta_deg"]
    assert full.shape == part.shape == (len(imgs),)
    with pytest.raises(ValueError, match="smaller than its smallest field"):
        reg.predict(imgs[:, :40, :40], 0.12)
    with pytest.raises(ValueError, match="need 48"):
        train_from_dataset(tiny_sets["twist"], {**settings, "crop_px": 44}, "twist", tmp_path / "m2", progress=False)
    with pytest.raises(ValueError, match="min_crop_px"):
        RegressorConfig.from_mapping({"crop_px": 64, "min_crop_px": 96})


def test_multi_field_reading_averages_the_fields_features(tiny_sets, tmp_path):
    """A model trained on variable fields reads an image that holds its full field in that field
    and smaller centred ones down to about ⅔ of it (floored to multiples of 8, never below its
    smallest): the features are their mean; a smaller image is read in the largest field only;
    a fixed-field model reads one field whatever is asked; window readings do the same."""
    from vdwstack.infer.reading import CropPredictor

    settings = {**TINY, "pixel_size_A": 0.12, "crop_px": 56, "min_crop_px": 32, "steps": 2}
    train_from_dataset(tiny_sets["twist"], settings, "twist", tmp_path / "m", progress=False)
    reg = Regressor(tmp_path / "m")
    assert reg.tta_fields_px((64, 64), 1) == [56]
    assert reg.tta_fields_px((64, 64), 4) == [56, 48, 40, 32]  # 56 → 37 px in 4 steps, each floored to 8
    assert reg.tta_fields_px((44, 60), 4) == [40]  # smaller than the full field: the largest that fits only
    root, _ = open_image_dataset(tiny_sets["twist"])
    imgs = root["images"][:3]
    each = [reg.predict_features(np.stack([im[(64 - c) // 2:(64 - c) // 2 + c, (64 - c) // 2:(64 - c) // 2 + c]
                                           for im in imgs]), 0.12) for c in (56, 48, 40, 32)]
    np.testing.assert_allclose(reg.predict_features(imgs, 0.12, tta_fields=4), np.mean(each, axis=0), atol=1e-5)
    pred = CropPredictor(reg, imgs[0], tta_rotations=1, batch_size=4, tta_fields=4)
    np.testing.assert_allclose(pred.features(np.array([[32, 32]]))[0], np.mean([e[0] for e in each], axis=0),
                               atol=1e-5)
    train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 2}, "slip", tmp_path / "s", progress=False)
    assert Regressor(tmp_path / "s").tta_fields_px((64, 64), 4) == [48]


def test_crop_positions_span_the_image_and_average_their_features(tiny_sets, tmp_path):
    """`tta_positions` reads crops on an even grid spanning the image (corners for 4), each inside
    it and each once; the features are the mean of those crops' own features; an image no larger
    than the crop has one position whatever is asked."""
    assert Regressor.crop_origins((64, 64), 48, 1) == [(8, 8)]
    assert Regressor.crop_origins((64, 80), 48, 4) == [(0, 0), (0, 32), (16, 0), (16, 32)]
    nine = Regressor.crop_origins((100, 100), 48, 9)
    assert len(nine) == 9 and (26, 26) in nine and all(0 <= r <= 52 and 0 <= c <= 52 for r, c in nine)
    assert Regressor.crop_origins((48, 48), 48, 4) == [(0, 0)]
    train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 2}, "slip", tmp_path / "s", progress=False)
    reg = Regressor(tmp_path / "s")
    root, _ = open_image_dataset(tiny_sets["slip"])
    imgs = root["images"][:3]  # 64 px at the model's 0.12 Å/px, 48 px crops
    each = [reg.predict_features(imgs[:, r:r + 48, c:c + 48], 0.12) for r, c in Regressor.crop_origins((64, 64), 48, 4)]
    np.testing.assert_allclose(reg.predict_features(imgs, 0.12, tta_positions=4), np.mean(each, axis=0), atol=1e-5)
    assert not np.allclose(each[0], each[3], atol=1e-4)  # the positions do see different pixels


def test_crop_sizes_of_a_variable_field_run_are_drawn_per_step():
    cfg = RegressorConfig(crop_px=168, min_crop_px=80)
    sides = {cfg.crop_for_step(np.random.default_rng([0, s])) for s in range(200)}
    assert min(sides) == 80 and max(sides) == 168 and all(s % 8 == 0 for s in sides)
    assert RegressorConfig(crop_px=112).crop_for_step(np.random.default_rng(0)) == 112


def test_gpu_check_runs_at_toy_sizes(tmp_path):
    """benchmarks/gpu_check.py --smoke: every part of the GPU check runs (here on the CPU)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert {"throughput", "training", "drit"} <= set(result)
    assert result["training"]["steps"] == 8 and np.isfinite(result["training"]["test_mean_dD_A"])
    assert result["drit"]["translate_s"] > 0


def test_constant_baseline_of_trilayers_scores_both_slips():
    from vdwstack.regress.evaluate import constant_slip_baseline
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for("ReS2")
    truth = [np.array([0.5, 1.0, 2.0]), np.array([0.2, 0.3, 1.1]), np.array([1.0, 0.1, 0.0]), np.array([0.4, 0.2, 2.0])]
    err = constant_slip_baseline(sym, *truth)
    assert err.shape == (3,) and np.all(err >= 0) and np.all(np.isfinite(err))


def test_init_from_starts_from_another_models_backbone(tiny_sets, tmp_path):
    """The backbone of the first model starts the second (its head, another size, starts anew);
    the card says where it started; a model of another architecture is refused, naming the file."""
    from safetensors.torch import load_file

    from vdwstack.regress.model import build_resnet, load_backbone

    train_from_dataset(tiny_sets["slip"], TINY, "slip", tmp_path / "a", progress=False)
    src = tmp_path / "a" / "model.safetensors"
    net = build_resnet("resnet18", 7)
    load_backbone(net, src)
    ref = load_file(str(src))
    assert torch.equal(net.state_dict()["layer3.0.conv1.weight"], ref["layer3.0.conv1.weight"])
    assert net.fc.out_features == 7
    with pytest.raises(ValueError, match="a.model.safetensors: not the same network"):
        load_backbone(build_resnet("resnet34", 7), src)
    card = train_from_dataset(tiny_sets["twist"], {**TINY, "steps": 1, "lr": 1e-9, "warmup_steps": 0}, "twist",
                              tmp_path / "b", progress=False, init_weights=src)
    assert card["training"]["initialised_from"] == str(src)
    out = load_file(str(tmp_path / "b" / "model.safetensors"))
    # One step at a vanishing learning rate: the backbone is still the first model's.
    assert torch.allclose(out["layer2.1.conv2.weight"], ref["layer2.1.conv2.weight"], atol=1e-6)


def test_a_card_with_bad_decoding_weights_names_the_file(tmp_path):
    from helpers import untrained_model

    folder = untrained_model(tmp_path / "m", "slip", "MoS2")
    card = json.loads((folder / "card.json").read_text())
    card["decoding"] = {"feature_weights": [1.0, 2.0]}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"card\.json: decoding: decoding weights: 2 values for \d+ features"):
        Regressor(folder)


def test_slip_orders_set_the_targets_and_travel_with_the_card(tiny_sets, tmp_path):
    """`slip_orders` picks the reciprocal vectors of the slip targets; the card records them, so the
    model reads back with its own head; a card without them (written before) means the defaults."""
    from vdwstack.regress.encoding import SlipEncoding, TrilayerSlipEncoding

    assert TargetCodec("slip", "ReS2", 3, orders=1).dim == TrilayerSlipEncoding("ReS2", orders=1).dim == 16
    assert TargetCodec("slip", "ReS2", 3).to_dict()["orders"] == 2
    assert TargetCodec("slip", "MoS2").to_dict()["orders"] == SlipEncoding("MoS2").max_order == 6
    card = train_from_dataset(tiny_sets["slip"], {**TINY, "slip_orders": 2}, "slip", tmp_path / "o2", progress=False)
    assert card["encoding"]["orders"] == 2 and card["encoding"]["dim"] == SlipEncoding("ReS2", orders=2).dim
    reg = Regressor(tmp_path / "o2")
    assert reg.codec.dim == card["encoding"]["dim"] < SlipEncoding("ReS2").dim
    root, _ = open_image_dataset(tiny_sets["slip"])
    assert reg.predict(root["images"][:2], 0.12)["Da_A"].shape == (2,)
    # A card that lost its `orders` names the default encoding, which is not the model's: refused,
    # naming the file (cards written before `orders` was recorded used the defaults and read as before).
    old = json.loads((tmp_path / "o2" / "card.json").read_text())
    del old["encoding"]["orders"]
    (tmp_path / "o2" / "card.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"o2/card.json: encoding: the model reads 12 features, .* 24"):
        Regressor(tmp_path / "o2")
    with pytest.raises(ValueError, match="regress.slip_orders"):
        RegressorConfig.from_mapping({"slip_orders": 0})
    with pytest.raises(ValueError, match="slip_orders 5: trilayer targets take orders up to 4"):
        TargetCodec("slip", "ReS2", 3, orders=5)


def test_slope_weighting_weights_the_loss_by_each_features_slope(tiny_sets, tmp_path):
    """`slope_weighting` p: loss weights ∝ E|∇φ|²^p, mean 1. A bilayer feature cos(2π g·D) has
    E|∇φ|² = 2π²|g|² (averaged over a rotation group of r distinct images: 1/r of it, the cosines'
    mean having 1/r of the variance), a twist harmonic n ∝ n²; the weights travel in the card's settings."""
    res2 = TargetCodec("slip", "ReS2")
    g = np.linalg.norm(res2.slip.g_vectors, axis=1)
    np.testing.assert_allclose(res2.feature_slopes(n=20000), 2 * np.pi**2 * g**2, rtol=0.03)
    mos2 = TargetCodec("slip", "MoS2")
    g = np.linalg.norm(mos2.slip.g_vectors, axis=1)
    np.testing.assert_allclose(mos2.feature_slopes(n=20000), 2 * np.pi**2 * g**2 / 3, rtol=0.03)
    tri = TargetCodec("slip", "ReS2", 3)
    for p in (1.0, -1.0, 0.5):
        w = tri.loss_weights(p)
        assert w.shape == (tri.dim,) and abs(w.mean() - 1) < 1e-6 and np.all(w > 0)
    s = tri.feature_slopes()
    assert np.corrcoef(s, tri.loss_weights(1.0))[0, 1] > 0.999 and np.corrcoef(s, tri.loss_weights(-1.0))[0, 1] < 0
    np.testing.assert_allclose(TargetCodec("slip", "ReS2").loss_weights(0.0), 1.0)
    # Twist harmonic n, cos(2πnθ/P): E|dφ/dθ|² = (2πn/P)²/2 over the folded range, so p = −0.5 weights it ∝ 1/n.
    twist = TargetCodec("twist", "MoS2", harmonics=6)
    P = twist.twist.sym.twist_period_deg
    n = np.arange(1, 7)
    np.testing.assert_allclose(twist.feature_slopes(n=20000), (2 * np.pi * n / P) ** 2 / 2, rtol=0.03)
    np.testing.assert_allclose(twist.loss_weights(-0.5), (1 / n) / (1 / n).mean(), rtol=0.02)
    card = train_from_dataset(tiny_sets["slip"], {**TINY, "slope_weighting": 1.0}, "slip", tmp_path / "w", progress=False)
    assert card["training"]["settings"]["slope_weighting"] == 1.0 and np.isfinite(card["metrics"]["final_loss"])
    card = train_from_dataset(tiny_sets["twist"], {**TINY, "slope_weighting": -0.5}, "twist", tmp_path / "t", progress=False)
    assert card["training"]["settings"]["slope_weighting"] == -0.5 and np.isfinite(card["metrics"]["final_loss"])
    with pytest.raises(ValueError, match="regress.slope_weighting"):
        RegressorConfig.from_mapping({"slope_weighting": 3})


def test_a_flipped_2h_image_is_the_mirrored_slip_and_its_features_map_back():
    # The physics the mirrored views of inference rest on: a MoS2 image flipped upside down is the
    # image of slip M·D (M: the projection's mirror) in a turned frame (its power spectrum matches
    # within 0.5 %), and not of D in any frame; the codec's permutation maps φ(M·D) onto φ(D).
    from vdwstack.simulate.render import simulate_row, stacking_row
    from vdwstack.structures.symmetry import projection_mirror

    sym, M = symmetry_for("MoS2"), projection_mirror("MoS2")
    D = (0.55, 0.2)  # off every mirror line: M·D is another stacking
    MD = tuple(float(v) for v in sym.cartesian_to_slip(M @ sym.slip_to_cartesian(*D)))
    assert sym.slip_error_A(*D, *MD) > 0.1

    def spectrum(slip, rotation_deg):
        img = simulate_row(stacking_row("MoS2", slip_A=slip, rotation_deg=rotation_deg, pixel_size_A=0.15,
                                        size_px=96))
        w = np.outer(np.hanning(96), np.hanning(96))
        return np.abs(np.fft.fft2((img - img.mean()) * w))

    flipped = spectrum(D, 17.0)[::-1]  # |FFT| of the image flipped upside down, up to a phase ramp
    flipped = np.roll(flipped, 1, axis=0)  # the flip maps frequency k to −k, i.e. row 0 stays row 0
    gap = lambda s: np.linalg.norm(s - flipped) / np.linalg.norm(flipped)
    assert gap(spectrum(MD, 180.0 - 17.0)) < 0.005
    # D in every frame whose lattice lies where the flipped one's does (163° + 60°·k)
    assert min(gap(spectrum(D, 163.0 + r)) for r in np.arange(0.0, 360.0, 60.0)) > 0.03

    codec = TargetCodec("slip", "MoS2")
    p = codec.mirror_permutation
    rng = np.random.default_rng(3)
    xy = rng.random((50, 2)) @ sym.lattice
    f, fm = codec.slip.encode(*sym.cartesian_to_slip(xy)), codec.slip.encode(*sym.cartesian_to_slip(xy @ M.T))
    np.testing.assert_allclose(fm, f[:, p], atol=1e-5)
    np.testing.assert_allclose(codec.mirrored_features(fm), f, atol=1e-5)  # and back: M is its own inverse
    assert (p[p] == np.arange(codec.dim)).all() and (p != np.arange(codec.dim)).sum() >= 20  # chiral pairs swap
    # A trilayer mirrors as a whole (D1, D2) → (M·D1, M·D2), checked on two independently drawn slips
    tri = TargetCodec("slip", "MoS2", layers=3)
    d1, d2 = rng.random((50, 2)) @ sym.lattice, rng.random((50, 2)) @ sym.lattice
    ft = tri.slip.encode(*sym.cartesian_to_slip(d1), *sym.cartesian_to_slip(d2))
    ftm = tri.slip.encode(*sym.cartesian_to_slip(d1 @ M.T), *sym.cartesian_to_slip(d2 @ M.T))
    np.testing.assert_allclose(ftm, ft[:, tri.mirror_permutation], atol=1e-5)
    assert TargetCodec("slip", "ReS2").mirror_permutation is None  # ReS2's mirror image is another lattice
    assert not TargetCodec("slip", "ReS2").has_mirror and codec.has_mirror and tri.has_mirror
    assert (TargetCodec("twist", "MoS2").mirror_permutation == np.arange(3)).all()  # θ → −θ: even features


@pytest.mark.parametrize("material", ["MoS2", "ReS2"])
def test_mirror_flips_show_half_the_crops_mirrored_with_their_targets_mapped(material):
    from dataclasses import replace

    codec = TargetCodec("slip", material)
    img = np.random.default_rng(0).random((1, 40, 40)).astype(np.float32)  # one crop place: 40 = 36 + 2 × 2
    labels = {"Da_A": np.array([0.55]), "Db_A": np.array([0.2])}
    kw = dict(labels=labels, codec=codec, pixel_size_A=0.1, crop_px=36, raw_intensity=False)
    (x0, t0), (x, t) = (TrainingData(img, aug=a, **kw).batch(32, np.random.default_rng(5))
                        for a in (Augmentation.off(), replace(Augmentation.off(), mirror=True)))
    assert np.allclose(x0, x0[:1]) and np.allclose(t0, t0[:1])  # without flips: the same crop, the same target
    flipped = np.array([np.allclose(c, x0[0, :, ::-1]) for c in x])
    if material == "ReS2":  # no mirror line: nothing is flipped
        assert not flipped.any() and np.allclose(t, t0)
        return
    assert 8 <= flipped.sum() <= 24 and all(np.allclose(c, x0[0]) for c in x[~flipped])
    np.testing.assert_allclose(t[flipped], np.broadcast_to(t0[0][codec.mirror_permutation], t[flipped].shape))
    np.testing.assert_allclose(t[~flipped], t0[~flipped])
    assert not np.allclose(t0[0][codec.mirror_permutation], t0[0])  # D = (0.55, 0.2) Å is chiral


def test_mirror_views_average_each_crop_and_its_flip(tiny_sets, tmp_path):
    """`tta_mirror` reads a 2H lattice's crops as they are and flipped (the twist features are even:
    mapped back unchanged), in the whole-image reading and in windows alike; ReS2 has no mirror line,
    so the setting leaves its reading as it is."""
    from vdwstack.infer.reading import CropPredictor

    train_from_dataset(tiny_sets["twist"], {**TINY, "steps": 2}, "twist", tmp_path / "t", progress=False)
    reg = Regressor(tmp_path / "t")
    imgs = open_image_dataset(tiny_sets["twist"])[0]["images"][:3]  # 64 px, 48 px centre crops at (8, 8)
    plain, flipped = (reg.predict_features(x, 0.12, tta_rotations=4) for x in (imgs, imgs[:, ::-1]))
    assert not np.allclose(plain, flipped, atol=1e-4)
    both = reg.predict_features(imgs, 0.12, tta_rotations=4, tta_mirror=True)
    np.testing.assert_allclose(both, (plain + flipped) / 2, atol=1e-5)
    pred = CropPredictor(reg, imgs[0], tta_rotations=4, batch_size=4, mirror_views=True)
    np.testing.assert_allclose(pred.features(np.array([[32, 32]]))[0], both[0], atol=1e-5)
    train_from_dataset(tiny_sets["slip"], {**TINY, "steps": 2}, "slip", tmp_path / "s", progress=False)
    res2 = Regressor(tmp_path / "s")
    np.testing.assert_array_equal(res2.predict_features(imgs, 0.12, tta_mirror=True), res2.predict_features(imgs, 0.12))


def test_twist_harmonics_reach_the_model_card_and_the_reader(tiny_sets, tmp_path):
    """`regress.settings.twist_harmonics`: the network is trained on that many cos(2πnθ/P) targets, the card
    records them, and a Regressor loaded from it reads and decodes them (a card without the key: 3)."""
    card = train_from_dataset(tiny_sets["twist"], {**TINY, "twist_harmonics": 5}, "twist", tmp_path / "tw5",
                              progress=False)
    assert card["encoding"]["dim"] == 5 and card["encoding"]["harmonics"] == 5
    reg = Regressor(tmp_path / "tw5")
    assert reg.codec.dim == 5 and reg.codec.twist.harmonics == 5
    root, _ = open_image_dataset(tiny_sets["twist"])
    assert reg.predict_features(root["images"][:2], float(root.attrs["pixel_size_A"])).shape == (2, 5)
    theta = np.array([0.7, 12.0, 47.3, 59.2])
    np.testing.assert_allclose(reg.codec.decode(reg.codec.encode({"theta_deg": theta}))["theta_deg"], theta, atol=0.011)
    assert TargetCodec("twist", "MoS2").dim == 3
    # A card that lost its `harmonics` names the default 3, not the model's 5: refused, naming the key.
    old = json.loads((tmp_path / "tw5" / "card.json").read_text())
    del old["encoding"]["harmonics"]
    (tmp_path / "tw5" / "card.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"tw5/card.json: encoding: the model reads 5 features, .* 3 \(its `harmonics`"):
        Regressor(tmp_path / "tw5")
