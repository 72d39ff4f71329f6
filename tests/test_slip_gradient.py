"""Small twists from the drift of a slip map: the variogram estimator on maps with known θ."""

import numpy as np
import pytest

from vdwstack.infer.slip_gradient import max_drift_for, twist_from_slip_map
from vdwstack.structures.symmetry import symmetry_for

STRIDE_A, WINDOW_A = 4.0, 20.0


def twisted_map(material: str, theta_deg: float, frame_deg: float = 0.0, mirror: bool = False,
                noise_A: float = 0.1, n: int = 33, seed: int = 0, centre_A=None) -> tuple[np.ndarray, np.ndarray]:
    """Folded (canonical) slip readings of a bilayer twisted by θ about a point (random inside the
    map unless given: there the local stacking is AA), the lattice turned by `frame_deg` (and
    mirrored) in the image, with Gaussian reading noise."""
    sym = symmetry_for(material)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * STRIDE_A
    t = np.deg2rad(theta_deg)
    r = np.stack([x, y], -1) - (rng.uniform(0, n * STRIDE_A, 2) if centre_A is None else np.asarray(centre_A))
    D = t * np.stack([-r[..., 1], r[..., 0]], -1)  # θ ẑ × r
    if mirror:
        D[..., 1] *= -1
    c, s = np.cos(np.deg2rad(frame_deg)), np.sin(np.deg2rad(frame_deg))
    D = D @ np.array([[c, -s], [s, c]]).T + rng.normal(0, noise_A, D.shape)
    return sym.canonical_slip(*sym.cartesian_to_slip(D))


def read(material, da, db):
    sym = symmetry_for(material)
    return twist_from_slip_map(da, db, sym, STRIDE_A, WINDOW_A)


@pytest.mark.parametrize("theta", [0.25, 0.5, 1.0, 2.0])
def test_res2_twist_read_from_the_drift_in_any_frame_and_hand(theta):
    for frame, mirror, seed in ((0.0, False, 0), (37.0, True, 1), (141.0, False, 2)):
        r = read("ReS2", *twisted_map("ReS2", theta, frame, mirror, seed=seed))
        assert not r["lower_bound"]
        assert abs(r["theta_deg"] - theta) < 3 * r["sigma_deg"] + 0.01, (frame, mirror, r)
        # 0.1 Å of noise per window over a 33 × 33 map: ~0.07° of statistical precision
        assert r["sigma_deg"] < 0.12 + 0.05 * theta
        assert r["noise_A"] == pytest.approx(0.1, abs=0.05)  # independent readings at lags ≥ W
        if theta >= 0.5:  # (below, θ is within 2σ of 0 and the ratio of rates is not given)
            assert r["anisotropy"] < 0.3  # a twist drifts the slip equally in every direction


def test_no_twist_and_a_stacking_boundary_read_as_no_drift():
    """Two domains with a jump between them: pairs across the boundary are a minority, the median
    keeps them from being read as a drift."""
    sym = symmetry_for("ReS2")
    rng = np.random.default_rng(3)
    D = np.where((np.arange(33) < 15)[None, :, None], sym.slip_to_cartesian(1.5, 0.3), sym.slip_to_cartesian(-0.4, 2.2))
    D = np.broadcast_to(D, (33, 33, 2)) + rng.normal(0, 0.1, (33, 33, 2))
    r = read("ReS2", *sym.canonical_slip(*sym.cartesian_to_slip(D)))
    assert r["theta_deg"] < 0.1 and not r["lower_bound"]


def test_mos2_angles_beyond_what_its_folded_metric_measures_are_flagged():
    """The six-fold group folds 2H slips into a small cell: a 2° drift over one window saturates the
    metric, and the result says θ is only a lower bound. A small twist whose map holds no AA region
    (its centre 150 Å away: the local slips are near 0.65 Å) is read."""
    assert max_drift_for(symmetry_for("MoS2")) < max_drift_for(symmetry_for("ReS2"))
    assert read("MoS2", *twisted_map("MoS2", 2.0))["lower_bound"]
    small = read("MoS2", *twisted_map("MoS2", 0.25, frame_deg=20.0, centre_A=(-150.0, 66.0)))
    assert not small["lower_bound"] and abs(small["theta_deg"] - 0.25) < 3 * small["sigma_deg"] + 0.01


def test_a_map_too_small_for_independent_lags_gives_none():
    assert read("ReS2", *twisted_map("ReS2", 1.0, n=7)) is None
