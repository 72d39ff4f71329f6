"""Closed-loop check: re-simulating a reading reproduces the image only when the reading is right."""

import json

import numpy as np
import pytest

from helpers import make_row
from vdwstack.closed_loop import (ClosedLoopSettings, check_reading, rotation_candidates_deg,
                                  spectral_orientation, stacking_change, Stacking)
from vdwstack.closed_loop.stage import closed_loop_to_files, domain_centres_A
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.core.io import write_tiff
from vdwstack.structures.materials import get_material
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.symmetry import symmetry_for

# Small crops and budgets: each check is a few seconds on 2 cores.
FAST = ClosedLoopSettings(crop_A=13.0, work_pixel_size_A=0.1, max_evaluations=30, defocus_A=(25.0, 45.0))
RES2_TRUTH = {"Da_A": 1.3, "Db_A": -0.7}
RES2_ROT_DEG = 71.3


def _image(row, seed, dose=2e5):
    clean = simulate_row(row)
    deg = Degradation(dose_e_per_A2=dose, gaussian_noise=0.1, scanline_jitter_px=0.3)
    return degrade(clean, row["pixel_size_A"], deg, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def res2_image():
    """ReS2 bilayer, arbitrary rotation and translation, 0.06 Å/px, noisy; truth known."""
    row = make_row("ReS2", size=260, pixel_size_A=0.06, rotation_deg=RES2_ROT_DEG, defocus_A=40.0,
                   source_fwhm_A=0.8, origin_x_A=3.7, origin_y_A=12.1, **RES2_TRUTH)
    return _image(row, 11), 0.06


@pytest.fixture(scope="module")
def res2_right(res2_image, tmp_path_factory):
    """The pipeline on a pseudo-experimental TIFF whose reading is the truth."""
    img, p = res2_image
    d = tmp_path_factory.mktemp("cl")
    write_tiff(d / "res2.tif", img, p, {"truth": {"material": "ReS2", **RES2_TRUTH}})
    record = {"image_id": "res2", "path": str(d / "res2.tif"), "material": "ReS2", "layers": 2, "task": "slip",
              "status": "ok", "pixel_size_A": p, "pixel_size_source": "metadata",
              "results": {"slip": {**RES2_TRUTH, "uncertainty_A": 0.02, "spread_A": 0.08, "domains": []}},
              "truth": RES2_TRUTH}
    (d / "result.json").write_text(json.dumps(record))
    np.savez_compressed(d / "maps.npz", slip_domains=np.zeros((3, 3), int))
    # The global search runs too (YAML `true` = "always"): on a right reading it must not warn.
    check = closed_loop_to_files(d / "res2.tif", d / "result.json", d / "maps.npz",
                                 {**vars(FAST), "enabled": True, "refine": False, "search_alternatives": True},
                                 d / "out")
    return check, d / "out"


def test_right_reading_fits_pose_and_agrees(res2_right):
    check, out = res2_right
    assert check["status"] == "ok", check
    assert json.loads((out / "check.json").read_text()) == json.loads(json.dumps(check))
    assert (out / "comparison.png").stat().st_size > 10_000
    c = check["checks"][0]
    # Rotation recovered modulo the monolayer's 2-fold symmetry, pixel size within 1 %.
    drot = (c["fit"]["rotation_deg"] - RES2_ROT_DEG + 90.0) % 180.0 - 90.0
    assert abs(drot) < 1.0, c["fit"]
    assert abs(c["fit"]["pixel_size_A"] / 0.06 - 1) < 0.01
    assert c["agreement"] > 0.9 and check["agreement"] == c["agreement"]
    assert check["warnings"] == []
    assert check["errors_vs_truth"]["reading_dD_A"] < 1e-6
    # The search's best is the reading itself (an equivalent), reported beside it at the top level.
    alt = check["alternative"]["slip"]
    assert alt == {k: v for k, v in c["alternative"].items() if k != "fit"}
    assert alt["fits_better"] is False and alt["distance_A"] < 0.1, alt
    assert alt["agreement"] < c["agreement"] + FAST.alternative_margin


def test_half_cell_wrong_reading_agrees_clearly_worse_and_the_search_finds_the_truth(res2_image, res2_right):
    img, p = res2_image
    right = res2_right[0]["agreement"]
    a = get_material("ReS2").a_A
    sym = symmetry_for("ReS2")
    # The flag threshold sits just below the right reading's agreement; flagged readings are searched.
    settings = ClosedLoopSettings(**{**vars(FAST), "refine": False, "min_agreement": right - 0.025})
    reading = {"Da_A": RES2_TRUTH["Da_A"] + a / 2, "Db_A": RES2_TRUTH["Db_A"]}
    wrong = check_reading(img, p, "ReS2", 2, reading, "slip", settings)
    assert wrong.reading.agreement < right - 0.05, (wrong.reading.agreement, right)
    assert any("poor agreement" in w for w in wrong.warnings)
    # The global search (slip grid, then local fit) lands on the truth, up to the symmetry.
    rec = wrong.to_record()
    alt = rec["alternative"]
    assert float(sym.slip_error_A(alt["Da_A"], alt["Db_A"], RES2_TRUTH["Da_A"], RES2_TRUTH["Db_A"])) < 0.3, alt
    assert alt["agreement"] > rec["agreement"] + settings.alternative_margin and alt["fits_better"] is True
    assert alt["distance_A"] == pytest.approx(float(sym.slip_error_A(alt["Da_A"], alt["Db_A"], *reading.values())),
                                              abs=1e-3)
    # The reading is kept (canonical form); the alternative is only reported, with a warning naming it.
    assert rec["reading"] == {k: round(float(v), 4) for k, v in zip(("Da_A", "Db_A"),
                                                                     sym.canonical_slip(*reading.values()))}
    assert any(f"a different reading fits better: D = ({alt['Da_A']:.2f}, {alt['Db_A']:.2f}) Å" in w
               for w in rec["warnings"]), rec["warnings"]


def test_refinement_moves_a_perturbed_reading_towards_the_truth(res2_image):
    img, p = res2_image
    sym = symmetry_for("ReS2")
    reading = {"Da_A": RES2_TRUTH["Da_A"] + 0.24, "Db_A": RES2_TRUTH["Db_A"] - 0.18}
    before = float(sym.slip_error_A(reading["Da_A"], reading["Db_A"], RES2_TRUTH["Da_A"], RES2_TRUTH["Db_A"]))
    res = check_reading(img, p, "ReS2", 2, reading, "slip", FAST, uncertainty=0.05)
    rec = res.to_record()
    after = float(sym.slip_error_A(rec["refined"]["Da_A"], rec["refined"]["Db_A"], RES2_TRUTH["Da_A"], RES2_TRUTH["Db_A"]))
    assert after < before / 2 and after < 0.1, (before, after)
    assert rec["refined_agreement"] >= rec["agreement"]
    assert rec["change_A"] == pytest.approx(stacking_change("ReS2", res.reading.stacking, res.refined.stacking, False),
                                            abs=1e-3)
    # It moved more than the reading's stated uncertainty: flagged.
    assert any("refinement moved the slip" in w for w in rec["warnings"])


@pytest.fixture(scope="module")
def twist13_image():
    """MoS2 bilayer twisted by 13°, rotated, translated, noisy."""
    row = make_row("MoS2", size=150, pixel_size_A=0.1, rotation_deg=-23.0, theta_deg=13.0, Da_A=0.7, Db_A=1.1,
                   defocus_A=30.0, source_fwhm_A=0.7, origin_x_A=5.3, origin_y_A=9.9)
    return _image(row, 5)


def test_wrong_twist_scores_lower_than_the_right_one(twist13_image):
    img = twist13_image
    s = ClosedLoopSettings(**{**vars(FAST), "refine": False})
    right = check_reading(img, 0.1, "MoS2", 2, {"theta_deg": 13.0}, "twist", s)
    wrong = check_reading(img, 0.1, "MoS2", 2, {"theta_deg": 19.0}, "twist", s)
    assert right.reading.agreement > 0.85
    assert wrong.reading.agreement < right.reading.agreement - 0.05, (wrong.reading.agreement, right.reading.agreement)


def test_twist_scan_finds_the_right_twist_for_a_flagged_reading(twist13_image):
    """A 35° reading of a 13° image: the local fit cannot leave it; the scan over [0°, 60°] can."""
    sym = symmetry_for("MoS2")
    s = ClosedLoopSettings(**{**vars(FAST), "refine": False, "min_agreement": 0.8})  # 35° agrees at ~0.6
    res = check_reading(twist13_image, 0.1, "MoS2", 2, {"theta_deg": 35.0}, "twist", s)
    rec = res.to_record()
    assert rec["agreement"] < 0.8 and any("poor agreement" in w for w in rec["warnings"])
    alt = rec["alternative"]
    assert float(sym.twist_error_deg(alt["theta_deg"], 13.0)) < 1.5, alt
    assert alt["agreement"] > 0.9 and alt["fits_better"] is True
    assert alt["distance_deg"] == pytest.approx(abs(alt["theta_deg"] - 35.0), abs=1e-3)
    assert rec["reading"] == {"theta_deg": 35.0}
    w = next(w for w in rec["warnings"] if "a different reading fits better" in w)
    assert f"θ = {alt['theta_deg']:.1f}°" in w and f"vs {rec['agreement']:.2f}" in w
    # "flagged" searches only flagged readings; "never" never.
    quiet = check_reading(twist13_image, 0.1, "MoS2", 2, {"theta_deg": 35.0}, "twist",
                          ClosedLoopSettings(**{**vars(s), "search_alternatives": "never"}))
    assert quiet.alternative is None and "alternative" not in quiet.to_record()


def test_alternative_settings_are_checked():
    assert ClosedLoopSettings.from_mapping({"search_alternatives": False}).search_alternatives == "never"
    assert ClosedLoopSettings.from_mapping({"search_alternatives": True}).search_alternatives == "always"
    assert ClosedLoopSettings().search_alternatives == "flagged"
    for bad in ({"search_alternatives": "sometimes"}, {"alternative_margin": -0.1}, {"alternative_step_A": 0},
                {"alternative_step_deg": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ClosedLoopSettings.from_mapping(bad)


def test_rotation_candidates_follow_the_lattice():
    # 6-fold spots, 3-fold monolayer: with a fixed slip D a 120° turn gives the model of R·D, a
    # different member of D's class, so all six orientations are tried; twists need only 120°.
    assert rotation_candidates_deg("MoS2", 10.0) == [10.0, 70.0, 130.0, 190.0, 250.0, 310.0]
    assert rotation_candidates_deg("MoS2", 10.0, twist=True) == [10.0, 70.0]
    assert rotation_candidates_deg("ReS2", 10.0) == [10.0, 70.0, 130.0]  # nearly hexagonal, 2-fold
    assert stacking_change("MoS2", Stacking(theta_deg=2.0), Stacking(theta_deg=58.0), True) == pytest.approx(56.0)


def test_domain_centres_are_inside_their_domain():
    labels = np.full((4, 6), -1)
    labels[:, :2] = 0
    labels[1:, 3:] = 1
    rec = {"map_extent_A": [1.0, 13.0, 9.0, 1.0], "map": {"stride_A": 2.0}}
    c = domain_centres_A(rec, labels)
    for d, (x, y) in c.items():
        assert labels[int((y - 1.0) // 2), int((x - 1.0) // 2)] == d


def test_failed_inference_and_bad_inputs_give_records_naming_the_file(tmp_path):
    img = tmp_path / "img.png"
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"image_id": "x", "path": str(img), "material": "WS2", "task": "slip",
                                  "status": "error", "error": "ValueError: no trained slip model for WS2"}))
    out = tmp_path / "out"
    check = closed_loop_to_files(img, result, None, {}, out)
    assert check["status"] == "skipped" and str(img) in check["message"] and "no trained slip model" in check["message"]
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "comparison.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "result.json"]  # nothing else touched
    # An ok record whose image file is missing: an error record naming the image.
    result.write_text(json.dumps({"image_id": "x", "material": "ReS2", "layers": 2, "status": "ok",
                                  "pixel_size_A": 0.05, "results": {"slip": {"Da_A": 0.0, "Db_A": 0.0}}}))
    check = closed_loop_to_files(img, result, None, {}, out)
    assert check["status"] == "error" and str(img) in check["error"]
    assert json.loads((out / "check.json").read_text())["status"] == "error"
    # A damaged record and an unknown setting: errors naming the record / the setting.
    result.write_text("{not json")
    check = closed_loop_to_files(img, result, None, {}, out)
    assert check["status"] == "error" and str(result) in check["error"]
    check = closed_loop_to_files(img, result, None, {"crop_size": 3}, out)
    assert check["status"] == "error" and "crop_size" in check["error"]
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "comparison.png"]  # no partial files left


def test_spectral_orientation_finds_the_lattice(res2_image):
    img, p = res2_image
    rot, scale, contrast = spectral_orientation(img, p, "ReS2")
    # Modulo 60°: the nearly hexagonal spots; the pose fit tries every 60° turn.
    assert abs((rot - RES2_ROT_DEG + 30.0) % 60.0 - 30.0) < 0.6 and abs(scale - 1) < 0.015, (rot, scale)
    assert spectral_orientation(np.random.default_rng(0).normal(size=(256, 256)), p, "ReS2") is None


def test_equivalent_hexagonal_readings_all_agree():
    """Regression: MoS2 readings are canonical representatives of a C6 class; an equivalent R·D
    of the true slip must reproduce the image (once only 120° of orientations were tried, so a
    2H MoS2 image scored 0.76 for its right reading and lost to a half-cell-wrong one)."""
    truth = (1.04, 0.40)
    row = make_row("MoS2", size=150, pixel_size_A=0.1, rotation_deg=45.8, defocus_A=35.0, source_fwhm_A=0.7,
                   origin_x_A=2.1, origin_y_A=4.4, Da_A=truth[0], Db_A=truth[1])
    img = _image(row, 3)
    sym = symmetry_for("MoS2")
    s = ClosedLoopSettings(**{**vars(FAST), "refine": False})
    t = np.deg2rad(120.0)  # with the old 120° search this reading scored 0.88 (the truth 0.99)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    da, db = sym.cartesian_to_slip(R @ sym.slip_to_cartesian(*truth))
    res = check_reading(img, 0.1, "MoS2", 2, {"Da_A": float(da), "Db_A": float(db)}, "slip", s)
    assert res.reading.agreement > 0.95, res.reading.agreement


def test_report_shows_the_alternative():
    from vdwstack.report.stage import _closed_loop_summary, closed_loop_table

    alt = {"theta_deg": 13.02, "agreement": 0.95, "distance_deg": 21.98, "fits_better": True}
    check = {"status": "ok", "image_id": "t", "agreement": 0.54, "warnings": ["w"], "alternative": {"twist": alt},
             "checks": [{"task": "twist", "region": "whole image", "reading": {"theta_deg": 35.0}, "agreement": 0.54,
                         "fit": {"pixel_size_A": 0.1, "defocus_A": 35.0, "source_fwhm_A": 0.7},
                         "alternative": {**alt, "fit": {}}, "warnings": ["w"]}]}
    assert _closed_loop_summary(check)["alternative"] == "θ = 13.02°, r = 0.950 (fits better)"
    row = closed_loop_table([check]).iloc[0]
    assert row["alternative_theta_deg"] == 13.02 and row["alternative_fits_better"]
    assert "alternative" not in _closed_loop_summary({**check, "alternative": {}})


def test_configured_microscope_reaches_the_simulated_crop(res2_image, tmp_path):
    """The config's microscope (not built-in defaults) is what the closed loop simulates: another
    beam energy or aperture changes the simulated crop; ranges enter as their midpoint."""
    from vdwstack.closed_loop import Comparator, Pose, Stacking, extract_crop

    img, p = res2_image
    crop = extract_crop(img, p, None, FAST)
    pose, stacking = Pose(30.0, 1.0, 35.0, 0.7), Stacking(**RES2_TRUTH)

    def render(microscope):
        comp = Comparator(crop, "ReS2", 2, FAST, microscope)
        return np.fft.irfft2(comp.render_fft(stacking, pose.rotation_deg, pose.scale, pose.defocus_A))

    default = render(None)
    for mic in ({"energy_eV": 80e3}, {"semiangle_mrad": 30.0}, {"semiangle_mrad": [28.0, 32.0]}):
        other = render(mic)
        assert np.abs(other - default).max() > 0.05 * np.abs(default).max(), mic
    np.testing.assert_array_equal(render({"semiangle_mrad": [28.0, 32.0]}), render({"semiangle_mrad": 30.0}))
    np.testing.assert_array_equal(render({"energy_eV": 300e3}), default)
    # Through the stage: the record says which microscope was simulated.
    write_tiff(tmp_path / "res2.tif", img, p)
    record = {"image_id": "res2", "material": "ReS2", "layers": 2, "task": "slip", "status": "ok",
              "pixel_size_A": p, "pixel_size_source": "metadata",
              "results": {"slip": {**RES2_TRUTH, "uncertainty_A": 0.02, "domains": []}}}
    (tmp_path / "result.json").write_text(json.dumps(record))
    check = closed_loop_to_files(tmp_path / "res2.tif", tmp_path / "result.json", None,
                                 {**vars(FAST), "refine": False, "search_alternatives": "never", "max_evaluations": 5},
                                 tmp_path / "out", microscope={"energy_eV": 200e3, "defocus_A": [30, 40]})
    assert check["status"] == "ok", check
    assert check["microscope"]["energy_eV"] == 200e3 and check["microscope"]["defocus_A"] == 35.0
