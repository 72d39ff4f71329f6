"""Final readings: the stacking that reproduces the image best, both hands, calibrated intervals."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_row
from vdwstack.closed_loop import (ClosedLoopSettings, Stacking, estimate_reading, rotation_candidates_deg,
                                  spectral_orientation, stacking_change)
from vdwstack.closed_loop.record import estimate_record
from vdwstack.closed_loop.stacking import canonical_stacking, layer_orderings
from vdwstack.closed_loop.stage import closed_loop_to_files, domain_centres_A
from vdwstack.core.io import write_tiff
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.symmetry import projection_is_chiral, symmetry_for

# Small crops and budgets: each reading is a few seconds on 2 cores. The test images come from the
# project's own renderer with round probes: the aberration fit is tested on its own.
FAST = ClosedLoopSettings(crop_A=13.0, work_pixel_size_A=0.1, max_evaluations=30, defocus_A=(25.0, 45.0),
                          search_peaks=2, fit_astigmatism=False)
RES2_TRUTH = {"Da_A": 1.3, "Db_A": -0.7}
RES2_ROT_DEG = 71.3


def _image(row, seed, dose=2e5):
    clean = simulate_row(row)
    deg = Degradation(dose_e_per_A2=dose, gaussian_noise=0.1, scanline_jitter_px=0.3)
    return degrade(clean, row["pixel_size_A"], deg, np.random.default_rng(seed))


def _slip_error(material, rec, truth):
    return float(symmetry_for(material).slip_error_A(rec["Da_A"], rec["Db_A"], truth["Da_A"], truth["Db_A"]))


@pytest.fixture(scope="module")
def res2_image():
    """ReS2 bilayer, arbitrary rotation and translation, 0.06 Å/px, noisy; truth known."""
    row = make_row("ReS2", size=260, pixel_size_A=0.06, rotation_deg=RES2_ROT_DEG, defocus_A=40.0,
                   source_fwhm_A=0.8, origin_x_A=3.7, origin_y_A=12.1, **RES2_TRUTH)
    return _image(row, 11), 0.06


@pytest.fixture(scope="module")
def res2_record(res2_image, tmp_path_factory):
    """The stage on a pseudo-experimental TIFF whose network reading is 3 Å off."""
    img, p = res2_image
    d = tmp_path_factory.mktemp("cl")
    write_tiff(d / "res2.tif", img, p, {"truth": {"material": "ReS2", **RES2_TRUTH}})
    wrong = {"Da_A": 2.4, "Db_A": -3.2}
    assert _slip_error("ReS2", wrong, RES2_TRUTH) > 2.5
    record = {"image_id": "res2", "path": str(d / "res2.tif"), "material": "ReS2", "layers": 2, "task": "slip",
              "status": "ok", "pixel_size_A": p, "pixel_size_source": "metadata",
              "results": {"slip": {**wrong, "uncertainty_A": 0.007, "spread_A": 0.08, "domains": [],
                                   "model": {"architecture": "resnet18"}}},
              "truth": RES2_TRUTH}
    (d / "result.json").write_text(json.dumps(record))
    np.savez_compressed(d / "maps.npz", slip_domains=np.zeros((3, 3), int))
    final = closed_loop_to_files(d / "res2.tif", d / "result.json", d / "maps.npz", {**vars(FAST), "enabled": True},
                                 d / "out")
    return final, d / "out"


def test_a_reading_3A_off_is_corrected_and_the_record_leads_with_the_answer(res2_record):
    final, out = res2_record
    assert final["status"] == "ok", final
    assert json.loads((out / "reading.json").read_text()) == json.loads(json.dumps(final))
    rec = final["results"]["slip"]
    assert _slip_error("ReS2", rec, RES2_TRUTH) < 0.05, rec
    assert rec["source"] in ("search", "refined") and rec["mirrored"] is False
    assert 0 < rec["uncertainty_A"] < 0.1 and rec["agreement"] > 0.9
    assert rec["network"]["Da_A"] == 2.4 and rec["candidates"]["network"]["agreement"] < rec["agreement"]
    assert rec["hand"]["agreement_as_is"] > rec["hand"]["agreement_mirrored"] + 0.02 and rec["hand"]["decided"]
    assert rec["verdict"].startswith("reproduces the image: r = ") and "next best" in rec["verdict"]
    assert final["errors_vs_truth"]["final_dD_A"] < 0.05 < final["errors_vs_truth"]["network_dD_A"]
    assert {"reading.json", "comparison.png", "model.xyz", "model.cif"} <= {p.name for p in out.iterdir()}


def test_the_runner_up_is_fitted_in_its_own_pose_and_optics(res2_image):
    """The margin a reading reports compares like with like: the runner-up's pose and optics are
    fitted at its own stacking (as the winner's are), not borrowed from the winner, so fitting them
    again gains nothing and the winner's optics fit it no better."""
    from dataclasses import replace

    from vdwstack.closed_loop.contenders import polish

    img, p = res2_image
    est = estimate_reading(img, p, "ReS2", 2, "slip", {"Da_A": 2.4, "Db_A": -3.2}, FAST)
    fin, ru = est.final.match, est.runner_up
    hand = next(h for h in est.hands if h.mirrored == ru.mirrored)
    borrowed = hand.comp.evaluate(ru.match.stacking, replace(ru.match.pose, defocus_A=fin.pose.defocus_A,
                                                             source_fwhm_A=fin.pose.source_fwhm_A))
    assert ru.match.agreement >= borrowed.agreement - 1e-9
    again = polish(hand, ru, False, FAST)
    assert again.match.agreement - ru.match.agreement < 2e-3, (ru.match.agreement, again.match.agreement)
    assert est.margin == pytest.approx(fin.agreement - ru.match.agreement) and est.margin > 0


def test_mirrored_image_is_detected_and_read_in_its_own_frame(res2_image):
    img, p = res2_image
    est = estimate_reading(np.fliplr(img), p, "ReS2", 2, "slip", None, FAST)
    rec = estimate_record(est)
    assert rec["mirrored"] is True and rec["hand"]["decided"], rec["hand"]
    assert rec["hand"]["agreement_mirrored"] > rec["hand"]["agreement_as_is"] + 0.02
    assert _slip_error("ReS2", rec, RES2_TRUTH) < 0.05, rec
    assert rec["source"] == "search" and "network" not in rec["candidates"]


def test_a_network_reading_made_in_the_mirror_hand_joins_that_hand(res2_image):
    """The network reads chiral lattices in both hands and says which: its proposal is a candidate
    of the mirror-image fit, not of the as-imaged one."""
    img, p = res2_image
    est = estimate_reading(np.fliplr(img), p, "ReS2", 2, "slip", {**RES2_TRUTH, "mirrored": True}, FAST)
    rec = estimate_record(est)
    assert rec["candidates"]["network"]["mirrored"] is True
    assert rec["mirrored"] is True and _slip_error("ReS2", rec, RES2_TRUTH) < 0.05, rec


def test_chirality_of_the_projections():
    assert projection_is_chiral("ReS2") and projection_is_chiral("ReSe2")
    assert not projection_is_chiral("MoS2") and not projection_is_chiral("WSe2")


def test_intervals_contain_the_truth_on_a_small_simulated_set():
    rng = np.random.default_rng(4)
    hits, widths = 0, []
    cases = [(1.3, -0.7), (2.6, 0.4), (-0.5, 2.2), (0.9, 1.6)]
    for i, (da, db) in enumerate(cases):
        row = make_row("ReS2", size=190, pixel_size_A=0.08, rotation_deg=float(rng.uniform(0, 180)),
                       defocus_A=float(rng.uniform(25, 45)), source_fwhm_A=0.7, Da_A=da, Db_A=db)
        rec = estimate_record(estimate_reading(_image(row, 20 + i), 0.08, "ReS2", 2, "slip", None, FAST))
        err = _slip_error("ReS2", rec, {"Da_A": da, "Db_A": db})
        hits += err <= rec["uncertainty_A"]
        widths.append(rec["uncertainty_A"])
    assert hits >= 3 and max(widths) < 0.1, (hits, widths)


def test_trilayer_both_slips_within_0p1A():
    truth = Stacking(Da_A=2.1, Db_A=-0.8, Da2_A=-1.5, Db2_A=2.9)
    row = make_row("ReS2", size=210, pixel_size_A=0.08, layers=3, rotation_deg=33.0, defocus_A=35.0,
                   source_fwhm_A=0.6, Da_A=2.1, Db_A=-0.8, Da2_A=-1.5, Db2_A=2.9)
    est = estimate_reading(_image(row, 9, dose=1e6), 0.08, "ReS2", 3, "slip", None, FAST)
    got = est.final.match.stacking
    sym = symmetry_for("ReS2")
    errs = []
    for twin in layer_orderings(truth, 3)[:1] + [layer_orderings(truth, 3)[-1]]:  # (D1, D2) and (−D2, −D1)
        errs.append(max(float(sym.slip_error_A(got.Da_A, got.Db_A, twin.Da_A, twin.Db_A)),
                        float(sym.slip_error_A(got.Da2_A, got.Db2_A, twin.Da2_A, twin.Db2_A))))
    assert min(errs) < 0.1, (got, errs)
    rec = estimate_record(est)
    assert {"Da2_A", "Db2_A", "uncertainty_A"} <= set(rec)


def test_noise_is_no_match_and_no_number(tmp_path):
    noise = np.random.default_rng(0).normal(1.0, 0.2, (200, 200))
    est = estimate_reading(noise, 0.08, "ReS2", 2, "slip", None, FAST)
    rec = estimate_record(est)
    assert rec["status"] == "no_match" and "Da_A" not in rec and "uncertainty_A" not in rec
    assert "no ReS2 stacking reproduces the image" in rec["warnings"][0]
    # Through the stage: the image's record says so and names the file.
    write_tiff(tmp_path / "noise.tif", noise.astype(np.float32), 0.08)
    record = {"image_id": "noise", "material": "ReS2", "layers": 2, "task": "slip", "status": "ok",
              "pixel_size_A": 0.08, "pixel_size_source": "user",
              "results": {"slip": {"task": "slip", "model": None, "message": "no trained slip model"}}}
    (tmp_path / "result.json").write_text(json.dumps(record))
    final = closed_loop_to_files(tmp_path / "noise.tif", tmp_path / "result.json", None, vars(FAST), tmp_path / "out")
    assert final["status"] == "no_match" and str(tmp_path / "noise.tif") in final["message"]
    assert final["models"] == []


def test_twist_read_by_search_alone():
    row = make_row("MoS2", size=150, pixel_size_A=0.1, rotation_deg=-23.0, theta_deg=13.0, Da_A=0.7, Db_A=1.1,
                   defocus_A=30.0, source_fwhm_A=0.7, origin_x_A=5.3, origin_y_A=9.9)
    rec = estimate_record(estimate_reading(_image(row, 5), 0.1, "MoS2", 2, "twist", None, FAST))
    assert rec["status"] == "ok" and rec["source"] == "search" and "hand" not in rec
    assert float(symmetry_for("MoS2").twist_error_deg(rec["theta_deg"], 13.0)) < 0.1, rec
    assert 0 < rec["uncertainty_deg"] < 0.5
    assert not any("aligned stacking" in w for w in rec["warnings"])  # 13°: a moiré period in the field


def test_a_twist_near_an_aligned_stacking_warns_that_its_alignment_is_least_certain():
    """1.3° and 58.7° (AA-like and AA′-like) differ only in the local stackings' contrast: a reading
    within 5° of 0° or 60° says so and gives the other alignment's best fit; 13° does not."""
    from vdwstack.closed_loop.estimate import Candidate, Estimate, HandFit, _warnings
    from vdwstack.closed_loop.stacking import Match, Pose

    def cand(theta, r):
        return Candidate("search", Match(r, Stacking(theta_deg=theta), Pose(), (0.0, 0.0)), False)

    def warnings(theta_final, theta_other, s=ClosedLoopSettings()):
        final, other = cand(theta_final, 0.96), cand(theta_other, 0.856)
        est = Estimate("MoS2", 2, True, "ok", final, [HandFit(False, None, None, [final, other])], other, None, s)
        return [w for w in _warnings(est) if "aligned stacking" in w]

    (w,) = warnings(58.71, 1.10)
    assert "θ = 58.71°" in w and "θ = 1.29°" in w and "r = 0.856" in w
    (w,) = warnings(1.3, 20.0)  # the other alignment never fitted: no agreement to give
    assert "θ = 58.70°" in w and "r =" not in w
    assert warnings(13.0, 47.0) == [] and warnings(54.5, 5.5) == []
    # 5° by default: a small twist read in the wrong alignment can land ~1° beyond its partner
    (w,) = warnings(56.5, 3.5)
    assert "θ = 56.50°" in w and "θ = 3.50°" in w
    assert warnings(1.3, 58.7, ClosedLoopSettings(aligned_twist_warning_deg=1.0)) == []


def test_a_twist_proposed_in_the_wrong_alignment_is_corrected_and_its_flag_kept(tmp_path):
    """The network read 13° as its partner 47° (AA′-like for AA-like) and said it could not tell:
    the final reading fits its way to 13°, and the reading's network block keeps the flag."""
    row = make_row("MoS2", size=150, pixel_size_A=0.1, rotation_deg=-23.0, theta_deg=13.0, Da_A=0.7, Db_A=1.1,
                   defocus_A=30.0, source_fwhm_A=0.7, origin_x_A=5.3, origin_y_A=9.9)
    write_tiff(tmp_path / "mos2.tif", _image(row, 5), 0.1)
    flag = {"theta_partner_deg": 13.0, "evidence": 0.1, "decided": False}
    record = {"image_id": "mos2", "path": str(tmp_path / "mos2.tif"), "material": "MoS2", "layers": 2,
              "task": "twist", "status": "ok", "pixel_size_A": 0.1, "pixel_size_source": "metadata",
              "results": {"twist": {"theta_deg": 47.0, "uncertainty_deg": 0.1, "spread_deg": 0.3, "domains": [],
                                    "alignment": flag, "model": {"architecture": "resnet18"}}}}
    (tmp_path / "result.json").write_text(json.dumps(record))
    final = closed_loop_to_files(tmp_path / "mos2.tif", tmp_path / "result.json", None,
                                 {**vars(FAST), "enabled": True}, tmp_path / "out")
    rec = final["results"]["twist"]
    assert float(symmetry_for("MoS2").twist_error_deg(rec["theta_deg"], 13.0)) < 0.1, rec
    assert rec["network"]["theta_deg"] == 47.0 and rec["network"]["alignment"] == flag


def test_a_twist_near_an_aligned_stacking_is_read_again_at_other_z_contrasts(monkeypatch):
    """Near 0° or 60° the alignment rests on the metal/chalcogen contrast: the reading is redone at
    each Z-contrast shift with the other alignment proposed, and the best fit wins (its shift
    recorded); a twist elsewhere, and every slip, is read once; a domain keeps its image's contrast."""
    from vdwstack.closed_loop import estimate as est_mod
    from vdwstack.closed_loop.estimate import Candidate, Estimate
    from vdwstack.closed_loop.stacking import Match, Pose

    calls = []
    # the fitted agreement of each (alignment, Z-contrast): the right alignment (1.2°) wins at +0.3
    agreement = {(58.7, 0.0): 0.96, (1.2, 0.0): 0.86, (58.7, -0.35): 0.95, (58.7, 0.3): 0.93, (1.2, 0.3): 0.985}

    def fake(image, p, material, layers, task, proposal, s, microscope, centre_A, context):
        z = float((microscope or {}).get("adf_z_exponent_shift", 0.0))
        calls.append((task, dict(proposal or {}), z, context))
        best = max((k for k in agreement if k[1] == z), key=agreement.get)  # what the search finds
        c = Candidate("search", Match(agreement[best], Stacking(theta_deg=best[0]), Pose(), (0.0, 0.0)), False)
        return Estimate(material, 2, task == "twist", "ok", c, [], None, None, s)

    monkeypatch.setattr(est_mod, "_estimate", fake)
    img = np.zeros((8, 8))
    e = estimate_reading(img, 0.1, "MoS2", 2, "twist", {"theta_deg": 8.9}, ClosedLoopSettings())
    assert e.final.match.stacking.theta_deg == 1.2 and e.z_exponent_shift == 0.3
    assert [c[2] for c in calls] == [0.0, -0.35, 0.3]
    assert all(c[1]["theta_deg"] == pytest.approx(60 - 58.7) for c in calls[1:])  # the other alignment proposed
    calls.clear()  # a domain of that image: read once, at the image's contrast
    estimate_reading(img, 0.1, "MoS2", 2, "twist", None, ClosedLoopSettings(), context=e)
    assert [c[2] for c in calls] == [0.3]
    calls.clear()  # an image no simulation reproduces well: the contrast is not what is missing
    agreement.update({(58.7, 0.0): 0.79, (1.2, 0.0): 0.75, (1.2, 0.3): 0.84})
    e = estimate_reading(img, 0.1, "MoS2", 2, "twist", None, ClosedLoopSettings())
    assert len(calls) == 1 and e.final.match.stacking.theta_deg == 58.7 and e.z_exponent_shift is None
    calls.clear()  # configured off
    e = estimate_reading(img, 0.1, "MoS2", 2, "twist", None, ClosedLoopSettings(z_contrast_shifts=()))
    assert len(calls) == 1 and e.z_exponent_shift is None
    calls.clear()  # a slip: read once
    estimate_reading(img, 0.1, "MoS2", 2, "slip", None, ClosedLoopSettings())
    assert len(calls) == 1


def test_astigmatism_and_scan_distortion_are_fitted():
    """An astigmatic probe (C12 = 8 Å) and a sheared scan (1.5 %): both are fitted and reported,
    and the slip stays right."""
    row = make_row("ReS2", size=200, pixel_size_A=0.08, rotation_deg=20.0, defocus_A=35.0, source_fwhm_A=0.6,
                   strain_xy=0.015, aberrations={"C12": 8.0, "phi12": 0.6}, **RES2_TRUTH)
    img = _image(row, 31, dose=1e6)
    s = ClosedLoopSettings(**{**vars(FAST), "fit_astigmatism": True, "try_mirror": False})
    rec = estimate_record(estimate_reading(img, 0.08, "ReS2", 2, "slip", None, s))
    assert _slip_error("ReS2", rec, RES2_TRUTH) < 0.03, rec
    fit = rec["fit"]
    # The shear is read back (ε_xy = 1.5 % turns the lattice's angle by ~1.4°), and the astigmatism's
    # angle (φ12 = 0.6 rad = 34.4°); its size is underestimated (it trades with defocus and source size).
    assert abs(fit["strain_shear"] - 0.015) < 0.003 and abs(fit["lattice_gamma_deg"] - rec_gamma_deg()) > 0.8, fit
    assert 2.0 < fit["C12_A"] < 12.0 and abs(fit["phi12_deg"] - 34.4) < 10.0, fit


def rec_gamma_deg() -> float:
    from vdwstack.structures.materials import get_material

    return get_material("ReS2").gamma_deg


def test_layer_orderings_keep_the_positions():
    s = Stacking(Da_A=1.0, Db_A=0.5, Da2_A=-0.3, Db2_A=2.0)
    outs = layer_orderings(s, 3)
    assert outs[0] == s and len(outs) == 6
    rev = outs[-1]  # the stack read from the other side: (−D2, −D1)
    assert (rev.Da_A, rev.Db_A, rev.Da2_A, rev.Db2_A) == pytest.approx((0.3, -2.0, -1.0, -0.5))
    assert layer_orderings(Stacking(Da_A=1.0, Db_A=0.5), 2)[1] == Stacking(Da_A=-1.0, Db_A=-0.5)
    # The canonical form turns both slips by the same symmetry operation.
    a = canonical_stacking("ReS2", Stacking(Da_A=2.097, Db_A=-0.797, Da2_A=-1.497, Db2_A=2.893), False)
    b = canonical_stacking("ReS2", Stacking(Da_A=-2.097, Db_A=0.797, Da2_A=1.497, Db2_A=-2.893), False)
    assert (a.Da_A, a.Db_A, a.Da2_A, a.Db2_A) == pytest.approx((b.Da_A, b.Db_A, b.Da2_A, b.Db2_A))


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
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "reading.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "result.json"]  # nothing else touched
    # An ok record whose image file is missing: an error record naming the image.
    result.write_text(json.dumps({"image_id": "x", "material": "ReS2", "layers": 2, "status": "ok",
                                  "pixel_size_A": 0.05, "results": {"slip": {"Da_A": 0.0, "Db_A": 0.0}}}))
    check = closed_loop_to_files(img, result, None, {}, out)
    assert check["status"] == "error" and str(img) in check["error"]
    assert json.loads((out / "reading.json").read_text())["status"] == "error"
    # A damaged record and an unknown setting: errors naming the record / the setting.
    result.write_text("{not json")
    check = closed_loop_to_files(img, result, None, {}, out)
    assert check["status"] == "error" and str(result) in check["error"]
    check = closed_loop_to_files(img, result, None, {"crop_size": 3}, out)
    assert check["status"] == "error" and "crop_size" in check["error"]
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "reading.json"]  # no partial files left


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
    s = FAST
    t = np.deg2rad(120.0)  # with the old 120° search this reading scored 0.88 (the truth 0.99)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    da, db = sym.cartesian_to_slip(R @ sym.slip_to_cartesian(*truth))
    est = estimate_reading(img, 0.1, "MoS2", 2, "slip", {"Da_A": float(da), "Db_A": float(db)}, s)
    assert est.candidate("network").match.agreement > 0.95, est.candidate("network").match.agreement


def test_report_leads_with_the_final_reading(res2_record):
    from vdwstack.report.tables import details_table, final_table

    final, _ = res2_record
    infer_rec = {"image_id": "res2", "material": "ReS2", "status": "ok", "results": {}}
    table = final_table([infer_rec], {"res2": (final, "x.png")})
    row = table.iloc[0]
    assert list(table.columns[:6]) == ["image", "material", "task", "status", "reading", "agreement"]
    assert row["reading"].startswith("D = (") and row["reading"].endswith(" Å") and "±" in row["reading"]
    assert row["network reading"].startswith("D = (2.400, -3.200) Å")
    assert row["source"] == final["results"]["slip"]["source"] and row["hand"].startswith("as is")
    assert "next best" in row["verdict"]
    details = details_table([final]).iloc[0]
    assert "network" in details and "runner-up" in details


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
    final = closed_loop_to_files(tmp_path / "res2.tif", tmp_path / "result.json", None,
                                 {**vars(FAST), "max_evaluations": 5, "try_mirror": False},
                                 tmp_path / "out", microscope={"energy_eV": 200e3, "defocus_A": [30, 40]})
    assert final["status"] == "ok", final
    assert final["microscope"]["energy_eV"] == 200e3 and final["microscope"]["defocus_A"] == 35.0


def test_a_twist_near_an_aligned_stacking_takes_its_own_interval_calibration():
    from vdwstack.closed_loop.uncertainty import interval_scale

    s = ClosedLoopSettings(interval_scale_slip=2.0, interval_scale_twist=0.5, interval_scale_twist_aligned=1.5)
    assert interval_scale(s, "MoS2", None) == 2.0
    assert interval_scale(s, "MoS2", 13.0) == 0.5 and interval_scale(s, "MoS2", 31.0) == 0.5
    assert interval_scale(s, "MoS2", 1.2) == 1.5 and interval_scale(s, "MoS2", 58.7) == 1.5
    assert interval_scale(s, "ReS2", 89.0) == 0.5  # 90° is no aligned stacking of a two-fold lattice


def _final_readings_benchmark():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "final_readings.py"
    spec = importlib.util.spec_from_file_location("final_readings_bench", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # its sibling metrics.py
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def test_interval_calibration_covers_the_conformal_count_and_fits_aligned_twists_apart():
    """benchmarks/final_readings.calibrate: the split-conformal count ⌈(n+1)·95 %⌉ of n readings is
    covered, and twists read within 5° of 0°/60° (here with errors 3× their fit's σ) get their own,
    larger k over the twist's floor; a wrong-basin reading is left out and counted."""
    fr = _final_readings_benchmark()
    assert fr.required_covered(23) == 23 and fr.required_covered(48) == 47 and fr.required_covered(100) == 96
    rng = np.random.default_rng(0)
    records, truths = [], []
    for i in range(60):
        near = i % 2 == 0
        theta = float(rng.uniform(0.5, 2.5) if i % 4 == 0 else rng.uniform(57.0, 59.5) if near
                      else rng.uniform(8.0, 52.0))
        sigma = 0.02
        read = theta + rng.normal(0.0, sigma * (3.0 if near else 1.0))
        records.append({"theta_deg": read, "covariance": [[sigma ** 2]], "parameters": ["theta_deg"],
                        "uncertainty_deg": 0.0})
        truths.append({"task": "twist", "material": "MoS2", "layers": 2, "theta_deg": theta})
    records.append({"theta_deg": 58.0, "covariance": [[0.02 ** 2]], "parameters": ["theta_deg"], "uncertainty_deg": 0.0})
    truths.append({"task": "twist", "material": "MoS2", "layers": 2, "theta_deg": 2.0})  # the other alignment
    cal = fr.calibrate({"MoS2_twist": {"records": records, "truths": truths}})
    far, near = cal["twist"], cal["twist_aligned"]
    assert far["n"] == 30 and near["n"] == 31 and near["gross_failures"] == 1
    assert far["required_covered"] == 30 and near["required_covered"] == 30
    assert near["floor"] == far["floor"] and near["scale"] > 1.5 * far["scale"]
    for kind, c in (("twist", far), ("twist_aligned", near)):
        recs = [(r, t) for r, t in zip(records, truths) if fr.calibration_kind(r, t) == kind
                and abs(r["theta_deg"] - t["theta_deg"]) < 5]
        widths = fr.rescored([r for r, _ in recs], [t for _, t in recs], {kind: c})
        covered = sum(abs(r["theta_deg"] - t["theta_deg"]) <= w["uncertainty_deg"] for (r, t), w in zip(recs, widths))
        assert covered >= c["required_covered"]


def test_final_readings_read_the_networks_with_a_run_configs_infer_block(tmp_path):
    """benchmarks/final_readings.py --config: the `infer` blocks of the files merge in order (the
    shipped CPU-hour overlay turns the mirrored views on over the demo config's defaults), and a file
    that is no workflow config, or a bad value, is refused naming it."""
    fr = _final_readings_benchmark()
    root = Path(__file__).resolve().parents[1]
    assert fr.merged_infer_settings([]) == fr.InferenceSettings()
    demo = fr.merged_infer_settings([root / "config" / "config.yaml"])
    both = fr.merged_infer_settings([root / "config" / "config.yaml", root / "config" / "cpu_hour.yaml"])
    assert not demo.tta_mirror and both.tta_mirror
    assert both.tta_rotations == demo.tta_rotations and both.window_A == demo.window_A
    later = tmp_path / "later.yaml"
    later.write_text("infer: {tta_mirror: false, tta_rotations: 2}\n")
    merged = fr.merged_infer_settings([root / "config" / "cpu_hour.yaml", later])
    assert not merged.tta_mirror and merged.tta_rotations == 2
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml"):
        fr.merged_infer_settings([listing])
    bad = tmp_path / "bad.yaml"
    bad.write_text("infer: {tta_rotations: 3}\n")
    with pytest.raises(ValueError, match="tta_rotations"):
        fr.merged_infer_settings([bad])
    with pytest.raises(ValueError, match="missing.yaml"):
        fr.merged_infer_settings([tmp_path / "missing.yaml"])
