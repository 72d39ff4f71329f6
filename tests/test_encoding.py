import numpy as np
import pytest

from vdwstack.regress.encoding import SlipEncoding, TwistEncoding


@pytest.mark.parametrize("material", ["ReS2", "MoS2"])
def test_slip_encoding_is_invariant_and_continuous(material):
    enc = SlipEncoding(material)
    sym = enc.sym
    rng = np.random.default_rng(0)
    D = rng.uniform(-5, 5, (300, 2))
    f = enc.encode(D[:, 0], D[:, 1])
    # Same target for every equivalent slip: lattice translations, −D, the rotation group.
    a_hat, b_hat = sym.material.unit_vectors
    for shift in (sym.lattice[0], sym.lattice[1], -sym.lattice[0] + 2 * sym.lattice[1]):
        da, db = sym.cartesian_to_slip(sym.slip_to_cartesian(D[:, 0], D[:, 1]) + shift)
        np.testing.assert_allclose(enc.encode(da, db), f, atol=1e-5)
    np.testing.assert_allclose(enc.encode(-D[:, 0], -D[:, 1]), f, atol=1e-5)
    for R in sym.rotations:
        da, db = sym.cartesian_to_slip(sym.slip_to_cartesian(D[:, 0], D[:, 1]) @ R.T)
        np.testing.assert_allclose(enc.encode(da, db), f, atol=1e-5)
    # No jump across the cell edge: a 0.01 Å step changes the target by a small amount.
    a = sym.material.a_A
    edge = enc.encode(np.array([a / 2 - 0.005, a / 2 + 0.005]), np.array([0.3, 0.3]))
    assert np.abs(edge[0] - edge[1]).max() < 0.2


@pytest.mark.parametrize("material", ["ReS2", "MoS2"])
def test_slip_decoding_round_trips(material):
    enc = SlipEncoding(material)
    rng = np.random.default_rng(1)
    D = rng.uniform(-5, 5, (400, 2))
    da, db = enc.decode(enc.encode(D[:, 0], D[:, 1]))
    err = enc.sym.slip_error_A(da, db, D[:, 0], D[:, 1])
    # Exact up to the ill-conditioned neighbourhood of AA (where all slips nearly coincide).
    far = np.linalg.norm(enc.sym.canonical_cartesian(D), axis=1) > 0.1
    assert err[far].max() < 1e-3 and err.max() < 0.02
    assert np.all(enc.sym.is_canonical(da, db, tol_A=1e-6))


def test_twist_encoding_round_trips_and_folds():
    enc = TwistEncoding("MoS2")
    theta = np.linspace(-200, 400, 97)
    np.testing.assert_allclose(enc.encode(theta), enc.encode(-theta), atol=1e-6)
    np.testing.assert_allclose(enc.encode(theta), enc.encode(theta + 120), atol=1e-5)
    assert np.abs(enc.decode(enc.encode(theta)) - enc.sym.fold_twist(theta)).max() < 0.01
    # θ and 60° − θ are different structures: different targets.
    assert np.abs(enc.encode(10.0) - enc.encode(50.0)).max() > 0.5


def test_twist_alignment_evidence_tells_theta_from_its_partner():
    """Only the odd harmonics tell θ from 60° − θ (AA-like vs AA′-like): features as encoded
    score 1, the partner's −1, features without odd harmonics 0; near 30° there is no partner."""
    enc = TwistEncoding("MoS2")
    theta = np.array([0.5, 1.0, 5.0, 52.0, 59.0])
    np.testing.assert_allclose(enc.partner_deg(theta), 60.0 - theta)
    f = enc.encode(theta)
    np.testing.assert_allclose(enc.alignment_evidence(f, theta), 1.0, atol=1e-6)
    np.testing.assert_allclose(enc.alignment_evidence(enc.encode(60.0 - theta), theta), -1.0, atol=1e-6)
    even_only = f.copy()
    even_only[:, 0::2] = 0.0  # the moiré period alone
    np.testing.assert_allclose(enc.alignment_evidence(even_only, theta), 0.0, atol=1e-9)
    half = 0.5 * f
    half[:, 1] = f[:, 1]  # odd harmonics shrunk by half, as a network unsure of the alignment gives
    np.testing.assert_allclose(enc.alignment_evidence(half, theta), 0.5, atol=1e-6)
    assert np.isnan(enc.alignment_evidence(enc.encode(29.5), 29.5))


def _nearest_encoding_deg(enc: TwistEncoding, features: np.ndarray) -> np.ndarray:
    """θ over the twist range (0°–60° for MoS2) on a 0.005° grid whose encoding is nearest to each row of features."""
    lo, hi = enc.sym.twist_range_deg
    grid = np.arange(lo, hi + 1e-9, 0.005)
    return grid[np.argmin(((enc.encode(grid)[None] - features[:, None]) ** 2).sum(-1), axis=1)]


def test_twist_decode_reads_hedged_features_near_an_alignment_from_an_even_harmonic():
    """A network unsure of the alignment near 0° or 60° shrinks the odd harmonics (the mean of θ's and
    60° − θ's encodings has none): the nearest encoding then lies degrees too far from the alignment,
    while the highest even harmonic, which the hedge leaves alone, still reads θ; far from the
    alignments the reading is the nearest encoding's."""
    for harmonics, m in ((6, 6), (3, 2)):
        enc = TwistEncoding("MoS2", harmonics=harmonics)
        assert enc.refine_harmonic == m and enc.refine_reach_deg == 120 / (4 * m)
        theta = np.array([0.4, 1.0, 2.0, 3.5, 56.5, 58.0, 59.0, 59.6])
        f = enc.encode(theta)
        hedged = 0.8 * f + 0.2 * enc.encode(60.0 - theta)  # odd harmonics × 0.6, even ones as they are
        nearest = _nearest_encoding_deg(enc, hedged)
        assert np.abs(nearest - theta).mean() > 0.5
        np.testing.assert_allclose(enc.decode(hedged), theta, atol=0.01)
    enc = TwistEncoding("MoS2", harmonics=6)
    far = np.array([8.0, 20.0, 45.0])
    f = enc.encode(far) * 0.9
    np.testing.assert_allclose(enc.decode(f), _nearest_encoding_deg(enc, f), atol=0.011)
    # ReX2's lattice is aligned at 0° only (90° turns it onto another lattice): a reading near 90° is the
    # nearest encoding's, one near 0° is refined.
    res2 = TwistEncoding("ReS2", harmonics=6)
    assert res2.sym.aligned_twists_deg == (0.0,)
    near_ends = np.array([1.0, 88.0])
    hedged = 0.8 * res2.encode(near_ends) + 0.2 * res2.encode(90.0 - near_ends)
    np.testing.assert_allclose(res2.decode(hedged)[0], 1.0, atol=0.01)
    np.testing.assert_allclose(res2.decode(hedged)[1], _nearest_encoding_deg(res2, hedged)[1], atol=0.011)
    # A single harmonic: the arccos of that feature over the whole range.
    one = TwistEncoding("MoS2", harmonics=1)
    np.testing.assert_allclose(one.decode(np.array([[0.5], [-0.5]])), [20.0, 40.0], atol=1e-6)


def test_alignment_scores_count_wrong_and_undecided_readings():
    from vdwstack.regress.evaluate import alignment_scores
    from vdwstack.regress.encoding import ALIGNMENT_EVIDENCE_MIN

    enc = TwistEncoding("MoS2")
    theta = np.array([1.0, 1.0, 2.0, 30.0, 40.0])
    pred = np.array([58.8, 1.1, 57.0, 31.0, 41.0])  # two read in the partner's alignment
    low, high = ALIGNMENT_EVIDENCE_MIN - 0.2, ALIGNMENT_EVIDENCE_MIN + 0.2
    s = alignment_scores(enc, theta, pred, np.array([low, high, high, np.nan, low]))
    assert s["n_wrong_alignment"] == 2 and s["n_undecided"] == 2
    assert s["n_wrong_undecided"] == 1 and s["n_right_undecided"] == 1
    assert s["decided_mae_deg"] == pytest.approx((0.1 + 55.0 + 1.0) / 3)  # the decided wrong one counts


def test_nearest_rows_matches_brute_force_across_chunks():
    from vdwstack.regress.decoding import NearestRows

    rng = np.random.default_rng(2)
    table = rng.normal(size=(5000, 6))
    queries = rng.normal(size=(130, 6))  # 2**18 // 5000 = 52 rows per chunk: three chunks
    got = NearestRows(table).nearest(queries, 3)
    d2 = ((queries[:, None, :] - table[None]) ** 2).sum(-1)
    want = np.argsort(d2, axis=1)[:, :3]
    assert got.shape == (130, 3)
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))


@pytest.mark.parametrize("material,layers", [("MoS2", 2), ("ReS2", 3)])
def test_weighted_decoding_discounts_the_noisy_features(material, layers):
    """Noise in half of the features: weighting them by 1 / their variance (what a model card's
    `decoding` block holds) reads the slips closer than equal weights; exact features decode exactly
    with any weights."""
    from vdwstack.regress.encoding import TrilayerSlipEncoding

    enc = SlipEncoding(material) if layers == 2 else TrilayerSlipEncoding(material)
    sym = enc.sym
    rng = np.random.default_rng(2)
    n = 150
    slips = [rng.uniform(0.3, 2.5, n) for _ in range(2 * (layers - 1))]
    f = enc.encode(*slips)
    sigma = np.where(np.arange(enc.dim) % 2 == 0, 0.03, 0.5)  # every other feature is noise
    noisy = f + rng.normal(0, 1, f.shape) * sigma
    w = 1 / sigma**2

    def err(pred):
        if layers == 2:
            return sym.slip_error_A(*pred, *slips)
        return sym.trilayer_slip_error_A(list(pred), slips, any_order=True)

    exact = err(enc.decode(f, weights=w))
    assert exact.max() < 0.02 if layers == 2 else np.median(exact) < 1e-3
    equal, weighted = err(enc.decode(noisy)), err(enc.decode(noisy, weights=w))
    assert weighted.mean() < 0.6 * equal.mean(), (weighted.mean(), equal.mean())
    # Scale does not matter (weights are normalised); bad weights are refused, naming the count.
    np.testing.assert_allclose(np.stack(enc.decode(noisy[:5], weights=7 * w)), np.stack(enc.decode(noisy[:5], weights=w)))
    with pytest.raises(ValueError, match=f"3 values for {enc.dim} features"):
        enc.decode(f, weights=np.ones(3))
    with pytest.raises(ValueError, match="finite and > 0"):
        enc.decode(f, weights=np.where(np.arange(enc.dim) == 0, 0.0, 1.0))


@pytest.mark.parametrize("material", ["ReS2", "MoS2"])
def test_trilayer_feature_pairs_are_one_per_orbit_in_first_met_order(material):
    """The trilayer targets' reciprocal-vector pairs: one representative per orbit under the group,
    the layer orders and negation, the first met in the (h1, k1, h2, k2) sweep — the order of the
    features trained models' heads were trained on (ReS2 at orders 2: 108 features)."""
    from vdwstack.regress.encoding import TrilayerSlipEncoding
    from vdwstack.structures.reciprocal import reciprocal_lattice

    enc = TrilayerSlipEncoding(material, orders=1)
    G = reciprocal_lattice(enc.sym.lattice)
    vecs = [np.array([h, k], float) @ G for h in (-1, 0, 1) for k in (-1, 0, 1)]
    brute: list[np.ndarray] = []  # pairwise comparison with every representative's images
    for g1 in vecs:
        for g2 in vecs:
            pair = np.stack([g1, g2])
            if (np.any(g1) or np.any(g2)) and not any(
                    np.min(np.abs(enc._images(*r) - pair).sum(axis=(1, 2))) < 1e-9 for r in brute):
                brute.append(pair)
    np.testing.assert_array_equal(enc.pairs, np.array(brute))
    # Every pair lies in exactly one representative's orbit.
    for g1 in vecs:
        for g2 in vecs:
            if np.any(g1) or np.any(g2):
                hits = [np.min(np.abs(enc._images(*r) - np.stack([g1, g2])).sum(axis=(1, 2))) < 1e-9 for r in enc.pairs]
                assert sum(hits) == 1
    if material == "ReS2":
        assert TrilayerSlipEncoding("ReS2").dim == 108
