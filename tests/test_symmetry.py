import numpy as np
import pytest

from vdwstack.structures.symmetry import symmetry_for

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("material", ["MoS2", "WS2", "ReS2", "ReSe2"])
def test_canonical_is_invariant_under_equivalences(material):
    sym = symmetry_for(material)
    lat = sym.lattice
    D = RNG.uniform(-8, 8, size=(200, 2))
    can = sym.canonical_cartesian(D)
    shifted = D + RNG.integers(-3, 4, size=(200, 1)) * lat[0] + RNG.integers(-3, 4, size=(200, 1)) * lat[1]
    np.testing.assert_allclose(sym.canonical_cartesian(shifted), can, atol=1e-9)
    np.testing.assert_allclose(sym.canonical_cartesian(-D), can, atol=1e-9)
    for g in sym.rotations:
        np.testing.assert_allclose(sym.canonical_cartesian(D @ g.T), can, atol=1e-9)
    # Canonical representatives are idempotent and lie in the sector [0, 360/n).
    np.testing.assert_allclose(sym.canonical_cartesian(can), can, atol=1e-9)


def test_group_orders():
    assert symmetry_for("MoS2").group_order == 6
    assert symmetry_for("ReS2").group_order == 2


def test_slip_error_hand_cases():
    mos2 = symmetry_for("MoS2")
    a = mos2.material.a_A
    assert mos2.slip_error_A(0.0, 0.0, 0.0, 0.0) == pytest.approx(0.0)
    assert mos2.slip_error_A(0.03, 0.0, 0.0, 0.0) == pytest.approx(0.03)  # plain distance
    assert mos2.slip_error_A(a - 0.02, 0.0, 0.0, 0.0) == pytest.approx(0.02)  # across the cell edge
    assert mos2.slip_error_A(-1.0, 0.0, 1.0, 0.0) == pytest.approx(0.0, abs=1e-12)  # D ≡ −D
    # C6: a slip along b̂ is equivalent to the same slip along â (60°/120° rotations).
    assert mos2.slip_error_A(0.0, 1.0, 1.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    res2 = symmetry_for("ReS2")
    # ReS2 has only ±D: the same length along b̂ is a different stacking.
    assert res2.slip_error_A(0.0, 1.0, 1.0, 0.0) > 0.5
    assert res2.slip_error_A(-1.0, -0.5, 1.0, 0.5) == pytest.approx(0.0, abs=1e-12)
    b = res2.material.b_A
    assert res2.slip_error_A(1.0, b - 0.04, 1.0, 0.0) == pytest.approx(0.04)


def test_slip_grid_covers_reduced_cell_once():
    sym = symmetry_for("ReS2")
    da, db = sym.slip_grid(0.2)
    # Area of the reduced cell / area per grid point.
    area = abs(np.linalg.det(sym.lattice)) / sym.group_order
    per_point = 0.2**2 * np.sin(np.deg2rad(sym.material.gamma_deg))
    assert len(da) == pytest.approx(area / per_point, rel=0.05)
    assert np.all(sym.is_canonical(da, db))
    # No two grid points are the same stacking (near the cell boundary an incommensurate grid
    # can bring two points closer than the step, but never onto each other).
    err = sym.slip_error_A(da[:, None], db[:, None], da[None], db[None])
    np.fill_diagonal(err, np.inf)
    assert err.min() > 1e-3


@pytest.mark.parametrize("step", [0.0, -0.1, float("nan")])
def test_slip_grid_rejects_bad_step(step):
    with pytest.raises(ValueError, match="step"):
        symmetry_for("MoS2").slip_grid(step)


def test_twist_folding():
    mos2 = symmetry_for("MoS2")
    assert mos2.twist_range_deg == (0.0, 60.0)
    np.testing.assert_allclose(mos2.fold_twist([0, 10, -10, 70, 110, 130, 60]), [0, 10, 10, 50, 10, 10, 60])
    assert mos2.twist_error_deg(59.0, 1.0) == pytest.approx(58.0)  # θ and 60−θ are different
    assert mos2.twist_error_deg(121.0, -1.0) == pytest.approx(0.0)
    res2 = symmetry_for("ReS2")
    assert res2.twist_range_deg == (0.0, 90.0)
    # Aligned stackings: 0° and, on the six-fold lattice of MX2, 60° (AA′-like); ReX2 only 0°.
    assert mos2.aligned_twists_deg == (0.0, 60.0) and res2.aligned_twists_deg == (0.0,)
    np.testing.assert_array_equal(mos2.near_aligned_twist([1.0, 59.0, 57.5, 3.5, 30.0, 61.0, -2.0]),
                                  [True, True, True, False, False, True, True])
    np.testing.assert_array_equal(res2.near_aligned_twist([1.0, 89.0, 179.0]), [True, False, True])
    assert not mos2.near_aligned_twist(2.0, within_deg=1.5)
    np.testing.assert_allclose(mos2.twist_partner_deg([1.3, 58.7, -1.3]), [58.7, 1.3, 58.7])
    assert res2.fold_twist(170.0) == pytest.approx(10.0)
