"""Scores of stacking readings against known truths (the independent test images' truth dicts).

A reading record is flat: "status" ("ok" or else), "Da_A", "Db_A" (+ "Da2_A", "Db2_A" for
trilayers) in Å, "theta_deg" in degrees, "uncertainty_A" (95 % radius, Å) or "uncertainty_deg"
(95 % half-width, degrees), "mirrored" (bool), "agreement", "source", and optionally the network's
own values "network_Da_A", "network_Db_A" (+ "network_Da2_A", "network_Db2_A"), "network_theta_deg".
A truth is the dict stored in the image (``read_truth``): "material", "layers", "task" ("slip" |
"twist"), "Da_A", "Db_A" (+ "Da2_A", "Db2_A"), "theta_deg", "mirrored".

Errors respect the material's stacking equivalences (vdwstack.structures.symmetry). A trilayer's
ΔD is the larger of its two slips' errors, minimised over the pair's equivalences: one rotation g
of the group applied to both slips (the image's orientation is one unknown) and the layer
reversed stack (D1, D2) ≡ (−D2, −D1). The networks' own values are scored up to any order of the
layers along the beam (their targets do not hold it: ``TRILAYER_ORDERS``); final readings, whose
fit chooses the order, are not. ``trilayer_slip_error_A(joint=False)`` gives the looser value
that minimises each slip's error on its own (``slip_error_A`` per slip), reported alongside.

    .venv/bin/python benchmarks/metrics.py      # the self-check
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from vdwstack.structures.symmetry import symmetry_for

SMALL_TWIST_DEG = 3.0


# --- per-image errors ---------------------------------------------------------------------------

def _slip_values(record: Mapping, keys: Sequence[str]) -> list[float] | None:
    """The record's values under `keys` as floats, or None when one is missing or not finite."""
    try:
        vals = [float(record[k]) for k in keys]
    except (KeyError, TypeError, ValueError):
        return None
    return vals if np.all(np.isfinite(vals)) else None


def trilayer_slip_error_A(material: str, pred: Sequence[float], true: Sequence[float], joint: bool = True,
                          any_order: bool = False) -> float:
    """ΔD (Å) of a trilayer: max of the two slips' errors, minimised over the equivalences.

    pred, true: (Da, Db, Da2, Db2) in Å. With `joint`, one group rotation g acts on both slips
    (and lattice translations on each); else each slip takes its own g (``slip_error_A``).
    `any_order`: also minimised over the 6 orders of the layers along the beam.
    """
    sym = symmetry_for(material)
    if not joint:
        e = sym.slip_error_A
        (a1, b1, a2, b2), (u1, v1, u2, v2) = pred, true
        as_read = max(e(a1, b1, u1, v1), e(a2, b2, u2, v2))
        return float(min(as_read, max(e(-a2, -b2, u1, v1), e(-a1, -b1, u2, v2))))
    return float(sym.trilayer_slip_error_A(pred, true, any_order=any_order))


def slip_error(record: Mapping, truth: Mapping, prefix: str = "", joint: bool = True) -> float:
    """ΔD (Å) of one reading (``prefix="network_"``: the network's own values); NaN if absent.
    `joint`: see :func:`trilayer_slip_error_A` (bilayers ignore it)."""
    keys = ["Da_A", "Db_A"] + (["Da2_A", "Db2_A"] if int(truth["layers"]) == 3 else [])
    pred = _slip_values(record, [prefix + k for k in keys])
    if pred is None:
        return float("nan")
    true = [float(truth.get(k, 0.0)) for k in keys]
    if len(keys) == 4:
        return trilayer_slip_error_A(truth["material"], pred, true, joint, any_order=prefix == "network_")
    return float(symmetry_for(truth["material"]).slip_error_A(pred[0], pred[1], true[0], true[1]))


def twist_error(record: Mapping, truth: Mapping, prefix: str = "") -> float:
    """|Δθ| (degrees) of one reading, folded by the material's twist equivalences; NaN if absent."""
    pred = _slip_values(record, [prefix + "theta_deg"])
    if pred is None:
        return float("nan")
    return float(symmetry_for(truth["material"]).twist_error_deg(pred[0], float(truth["theta_deg"])))


# --- summaries ---------------------------------------------------------------------------------

def summary(errors: Sequence[float], mean_key: str = "mean") -> dict:
    """n, mean (or MAE), median, P95 and max of the finite errors (NaN entries are skipped)."""
    e = np.asarray(errors, float)
    e = e[np.isfinite(e)]
    if not len(e):
        return {"n": 0}
    return {"n": len(e), mean_key: float(e.mean()), "median": float(np.median(e)),
            "p95": float(np.percentile(e, 95)), "max": float(e.max())}


def is_ok(record: Mapping) -> bool:
    return record.get("status") == "ok"


def failures(records: Sequence[Mapping], truths: Sequence[Mapping], errors: Sequence[float]) -> dict:
    """Records with status != "ok", or "ok" without a value to score: counted and listed."""
    listed = []
    for r, e in zip(records, errors):
        if not is_ok(r) or not np.isfinite(e):
            listed.append({"image_id": r.get("image_id"), "status": r.get("status"),
                           "error": r.get("error", "" if not is_ok(r) else "no value to score")})
    return {"count": len(listed), "fraction": len(listed) / max(len(records), 1), "records": listed}


def coverage(records: Sequence[Mapping], errors: Sequence[float], key: str) -> dict:
    """Fraction of scored readings whose error ≤ their stated 95 % interval `key` (Å or degrees)."""
    hits = []
    for r, e in zip(records, errors):
        u = _slip_values(r, [key])
        if is_ok(r) and np.isfinite(e) and u is not None:
            hits.append(e <= u[0])
    return {"n": len(hits), "fraction": _fraction(hits)}


def _fraction(hits: Sequence[bool]) -> float:
    return float(np.mean(hits)) if len(hits) else float("nan")


def hand(records: Sequence[Mapping], truths: Sequence[Mapping]) -> dict:
    """Fraction of readings whose "mirrored" matches the truth's, overall and per true hand."""
    by = {True: [], False: []}
    for r, t in zip(records, truths):
        if is_ok(r) and isinstance(r.get("mirrored"), (bool, np.bool_)):
            by[bool(t.get("mirrored", False))].append(bool(r["mirrored"]) == bool(t.get("mirrored", False)))
    return {"n": len(by[True]) + len(by[False]), "fraction": _fraction(by[True] + by[False]),
            "mirrored": {"n": len(by[True]), "fraction": _fraction(by[True])},
            "unmirrored": {"n": len(by[False]), "fraction": _fraction(by[False])}}


def _ok_errors(records: Sequence[Mapping], errors: Sequence[float]) -> list[float]:
    return [e if is_ok(r) else float("nan") for r, e in zip(records, errors)]


# --- task scores ---------------------------------------------------------------------------------

def score_slip(records: Sequence[Mapping], truths: Sequence[Mapping]) -> dict:
    """Slip scores: ΔD summary (Å), coverage of uncertainty_A, hand (ReS2), failures, network."""
    errors = _ok_errors(records, [slip_error(r, t) for r, t in zip(records, truths)])
    out = {"dD_A": summary(errors), "coverage": coverage(records, errors, "uncertainty_A"),
           "failures": failures(records, truths, errors)}
    if all(t["material"].startswith("Re") for t in truths):
        out["hand"] = hand(records, truths)
    if truths and int(truths[0]["layers"]) == 3:
        loose = [slip_error(r, t, joint=False) for r, t in zip(records, truths)]
        out["dD_A_independent_rotations"] = summary(_ok_errors(records, loose))
    net = _ok_errors(records, [slip_error(r, t, "network_") for r, t in zip(records, truths)])
    if np.isfinite(net).any():
        out["network"] = {"dD_A": summary(net)}
    return out


def is_small_twist(truth: Mapping) -> bool:
    """Whether the twist is within SMALL_TWIST_DEG of an aligned stacking: of 0° or, for the AA′-like
    side of a hexagonal MX2 (θ ≡ 60° − θ′), of 60° — the moiré period is as long either way."""
    return bool(symmetry_for(truth["material"]).near_aligned_twist(float(truth["theta_deg"]), SMALL_TWIST_DEG))


def _twist_block(errors: Sequence[float], truths: Sequence[Mapping]) -> dict:
    small = [e if is_small_twist(t) else float("nan") for e, t in zip(errors, truths)]
    return {"dtheta_deg": summary(errors, "mae"), "below_3deg": summary(small, "mae")}


def score_twist(records: Sequence[Mapping], truths: Sequence[Mapping]) -> dict:
    """Twist scores: |Δθ| MAE/median/P95/max (degrees), all and θ < 3°, coverage, failures, network."""
    errors = _ok_errors(records, [twist_error(r, t) for r, t in zip(records, truths)])
    out = _twist_block(errors, truths)
    small = [r for r, t in zip(records, truths) if is_small_twist(t)]
    small_err = [e for e, t in zip(errors, truths) if is_small_twist(t)]
    out.update(coverage=coverage(records, errors, "uncertainty_deg"),
               coverage_below_3deg=coverage(small, small_err, "uncertainty_deg"),
               failures=failures(records, truths, errors))
    net = _ok_errors(records, [twist_error(r, t, "network_") for r, t in zip(records, truths)])
    if np.isfinite(net).any():
        out["network"] = _twist_block(net, truths)
    return out


def score(records: Sequence[Mapping], truths: Sequence[Mapping]) -> dict:
    """All scores of one task's readings (records[i] reads the image of truths[i])."""
    if len(records) != len(truths):
        raise ValueError(f"{len(records)} records but {len(truths)} truths")
    tasks = {t["task"] for t in truths}
    if len(tasks) != 1:
        raise ValueError(f"one task at a time, got {sorted(tasks)}")
    out = score_slip(records, truths) if tasks == {"slip"} else score_twist(records, truths)
    ok = [r for r in records if is_ok(r)]
    agreement = [float(r["agreement"]) for r in ok if r.get("agreement") is not None]
    out.update(n=len(records), task=tasks.pop(), sources=dict(Counter(str(r.get("source")) for r in ok)),
               mean_agreement=float(np.mean(agreement)) if agreement else float("nan"))
    return out


# --- self-check (run by hand) ----------------------------------------------------------------

def _self_check() -> None:
    rng = np.random.default_rng(0)
    sym = symmetry_for("ReS2")
    truths = [{"material": "ReS2", "layers": 2, "task": "slip", "Da_A": float(rng.uniform(0, 6)),
               "Db_A": float(rng.uniform(0, 6)), "theta_deg": 0.0, "mirrored": bool(i % 2)} for i in range(10)]
    exact = [{"status": "ok", **{k: t[k] for k in ("Da_A", "Db_A", "mirrored")}, "uncertainty_A": 0.1,
              "source": "network", "agreement": 0.9} for t in truths]
    s = score(exact, truths)
    assert s["dD_A"]["max"] < 1e-9 and s["coverage"]["fraction"] == 1.0 and s["hand"]["fraction"] == 1.0, s
    # Equivalent readings (−D plus a lattice vector) are exact too.
    equiv = [dict(r, Da_A=-r["Da_A"] + sym.material.a_A, Db_A=-r["Db_A"] - sym.material.b_A) for r in exact]
    assert score(equiv, truths)["dD_A"]["max"] < 1e-9
    off = [dict(r, Da_A=r["Da_A"] + 0.5) for r in exact]  # â-shift 0.5 Å: not an equivalence
    off[0] = {"status": "error", "error": "boom", "image_id": "x"}
    off[1]["mirrored"] = not off[1]["mirrored"]
    s = score(off, truths)
    assert abs(s["dD_A"]["mean"] - 0.5) < 1e-9 and s["dD_A"]["n"] == 9 and s["coverage"]["fraction"] == 0.0, s
    assert s["failures"]["count"] == 1 and s["hand"]["mirrored"]["fraction"] == 0.8, s
    _check_bilayer_twist_trilayer(rng)
    print("metrics self-check passed")


def _check_bilayer_twist_trilayer(rng: np.random.Generator) -> None:
    # The joint trilayer metric reduces to slip_error_A slip by slip for identical slips.
    t = [1.0, 2.0, 1.0, 2.0]
    assert trilayer_slip_error_A("MoS2", [1.5, 2.0, 1.5, 2.0], t) == trilayer_slip_error_A("MoS2", [1.5, 2.0, 1.5, 2.0], t, False)
    d = [float(v) for v in rng.uniform(0, 6, 4)]
    relabelled = [-d[2], -d[3], -d[0], -d[1]]
    assert trilayer_slip_error_A("ReS2", relabelled, d) < 1e-9
    flipped_one = [-d[0], -d[1], d[2], d[3]]  # one slip negated: another trilayer stacking
    assert trilayer_slip_error_A("ReS2", flipped_one, d) > 1e-3 > trilayer_slip_error_A("ReS2", flipped_one, d, False)
    tri = [{"material": "ReS2", "layers": 3, "task": "slip", "Da_A": d[0], "Db_A": d[1], "Da2_A": d[2], "Db2_A": d[3]}]
    rec = [{"status": "ok", **{k: tri[0][k] + 0.3 * (k == "Db2_A") for k in ("Da_A", "Db_A", "Da2_A", "Db2_A")},
            "uncertainty_A": 0.2, **{"network_" + k: tri[0][k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A")}}]
    s = score(rec, tri)
    assert abs(s["dD_A"]["max"] - 0.3) < 1e-9 and s["coverage"]["fraction"] == 0.0, s
    assert s["network"]["dD_A"]["max"] < 1e-9 and s["hand"]["n"] == 0, s
    truths = [{"material": "MoS2", "layers": 2, "task": "twist", "theta_deg": th} for th in (1.0, 2.0, 10.0, 25.0)]
    recs = [{"status": "ok", "theta_deg": -th + 120.0 + 0.5, "uncertainty_deg": 0.6, "network_theta_deg": th}
            for th in (1.0, 2.0, 10.0, 25.0)]
    s = score(recs, truths)
    assert abs(s["dtheta_deg"]["mae"] - 0.5) < 1e-9 and s["below_3deg"]["n"] == 2, s
    assert s["coverage"]["fraction"] == 1.0 and s["network"]["dtheta_deg"]["mae"] < 1e-9, s
    assert is_small_twist({"material": "MoS2", "theta_deg": 58.5}) and not is_small_twist(
        {"material": "MoS2", "theta_deg": 56.0})  # AA′-like small twists count as small


if __name__ == "__main__":
    _self_check()
