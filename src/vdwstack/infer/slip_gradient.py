"""Small twist angles from the drift of the local slip across a slip map.

A bilayer twisted by a small θ has no single slip: the second layer is turned about some point,
so the local slip drifts linearly across the image, D(r) = D₀ + θ ẑ × r (θ in radians), 0.44 Å
per 25 Å at 1°. A crop of the twist network holds no moiré period below a few degrees (the period
is a / (2 sin θ/2): 181 Å for MoS2 at 1°), but a slip map of that image holds the drift. Its rate
is the twist: for any pair of windows a lag h apart, |ΔD| = θ |h|, whatever the direction of h,
the lattice's orientation in the image, its hand or which layer is on top (a rotation by θ moves
every point by θ times its distance; |ΔD| is invariant under all of these).

Estimator (a variogram of the slip map): for lags h of whole strides along rows and columns,
the median over window pairs of ΔD², where ΔD is the slip metric's distance (minimised over the
stacking's symmetry and lattice translations, so folded readings need no unwrapping), is fitted by
θ² |h|² + c. c takes the readings' noise (2σ² for independent windows); lags start at one window
side, where neighbouring windows no longer share pixels and their noise is independent, and end
at a quarter of the map: then at most a third of the pairs straddle one stacking boundary (a jump,
not a drift) or the neighbourhood of a symmetric stacking the drift passes through, and the
median ignores them; pairs more than 2 × `max_drift_A` apart are left out, since no drift within
the lags used spans that much: they straddle a jump. Lags are
kept while θ|h| stays below `max_drift_A`: near stackings fixed by a symmetry the metric reads a
drift as less than it is (:func:`max_drift_for`). That bounds the angles a map can read: the first
independent lag (one window, 20 Å) must span less than it, θ < 2.4° for ReS2 and 0.8° for 2H
MoS2; above, ``lower_bound`` says so (and the twist network's moiré takes over).

Valid for a pure twist of a bilayer without reconstruction. A map around the moiré's AA point of a
2H material (six-fold group) reads low: every slip there is close to its images under the group,
the estimate itself is then small and the check above does not see it (measured on synthetic maps:
0.085° for 0.25°). Heterostrain drifts the slip too
(|ΔD| then depends on the lag's direction: reported as the anisotropy of the two directions' rates);
atomic reconstruction at θ ≲ 1° (AB/BA triangles) makes the drift piecewise. The 1σ is the larger of
the fit's residual scatter (scaled by the window side in strides: medians at neighbouring lags share
most of their windows) and the medians' own sampling error (from their interquartile range, one
independent pair per window² of map); benchmarks/small_twist.py measures it against the truth.

Written here: no library estimates a twist from a stacking map; the fit is a few lines of numpy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from vdwstack.structures.symmetry import StackingSymmetry, symmetry_for

SlipDistance = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def slip_variogram(da_A: np.ndarray, db_A: np.ndarray, distance: SlipDistance, max_lag: int,
                   jump_A: float = np.inf, window_strides: float = 1.0) -> dict[str, np.ndarray]:
    """Median ΔD² (Å²) of window pairs k strides apart, per lag k = 1..max_lag, along columns (x)
    and rows (y) separately, with the 1σ of each median; pairs farther apart than `jump_A` (Å) are
    left out. da_A, db_A: (rows, cols) slip maps; distance(da1, db1, da2, db2): ΔD in Å;
    window_strides: the window side in strides (overlapping windows share their noise: a median's
    1σ counts one independent pair per window² of map). Returns arrays over k: ``k``, ``x``, ``y``
    (medians; NaN where a lag does not fit the map), ``x_sigma``, ``y_sigma``."""
    R, C = da_A.shape
    k = np.arange(1, max_lag + 1)
    out = {"k": k, **{key: np.full(len(k), np.nan) for key in ("x", "y", "x_sigma", "y_sigma")}}

    def med(d):
        d2 = d[d <= jump_A] ** 2
        if not d2.size:
            return np.nan, np.nan
        n_eff = max(d2.size / max(window_strides, 1.0) ** 2, 1.0)
        q1, q2, q3 = np.quantile(d2, [0.25, 0.5, 0.75])
        # the median's standard error from the IQR (robust to the jump pairs' tail)
        return float(q2), float(1.2533 * (q3 - q1) / 1.349 / np.sqrt(n_eff))

    for i, lag in enumerate(k):
        if lag < C:
            out["x"][i], out["x_sigma"][i] = med(distance(da_A[:, :-lag], db_A[:, :-lag], da_A[:, lag:], db_A[:, lag:]).ravel())
        if lag < R:
            out["y"][i], out["y_sigma"][i] = med(distance(da_A[:-lag], db_A[:-lag], da_A[lag:], db_A[lag:]).ravel())
    return out


def twist_from_slip_map(da_A: np.ndarray, db_A: np.ndarray, sym: StackingSymmetry, stride_A: float,
                        window_A: float) -> dict | None:
    """Twist θ (degrees, ≥ 0) from the drift of a bilayer's slip map, with its 1σ.

    da_A, db_A: (rows, cols) slip maps (Å) of windows `window_A` wide at `stride_A` (Å);
    sym: the material's stacking symmetry (its slip metric, and the largest drift a lag may span
    before the metric saturates, :func:`max_drift_for`). Returns None when the map is too small for
    3 lags of at least one window side; else ``theta_deg``,
    ``sigma_deg``, ``noise_A`` (the readings' noise per window, from the fit's intercept),
    ``lags_A`` (the first and last lag used), ``lower_bound`` (true when the metric cannot follow
    the drift: the shortest independent lag spans more than the largest drift, the readings scatter
    more than that, or over a third of the pairs start from a slip so close to a symmetric stacking
    that the drift across the lag folds back), ``anisotropy`` (|rate_x − rate_y| / mean: large for
    heterostrain or a real domain boundary, ~0 for a pure twist) and ``n_lags``.
    """
    distance, max_drift_A = sym.slip_error_A, max_drift_for(sym)
    first = max(1, int(np.ceil(window_A / stride_A)))
    last = max(first + 2, max(da_A.shape) // 4)
    if first + 2 > min(da_A.shape) - 1:
        return None
    # A pair more than twice the largest drift the lags may span apart is a jump, not a drift.
    v = slip_variogram(da_A, db_A, distance, last, jump_A=2 * max_drift_A, window_strides=window_A / stride_A)
    k, gx, gy = v["k"], v["x"], v["y"]
    h_A = k * stride_A
    use = (k >= first) & ~(np.isnan(gx) & np.isnan(gy))
    sel = use & (k < first + 3)  # start from the shortest independent lags, then reach out
    for _ in range(6):
        h2 = np.concatenate([h_A[sel] ** 2, h_A[sel] ** 2])
        g = np.concatenate([gx[sel], gy[sel]])
        g_sigma = np.concatenate([v["x_sigma"][sel], v["y_sigma"][sel]])
        ok = np.isfinite(g)
        A = np.stack([h2[ok], np.ones(ok.sum())], axis=1)
        coef, *_ = np.linalg.lstsq(A, g[ok], rcond=None)
        theta = float(np.sqrt(max(coef[0], 0.0)))
        wider = use & ((h_A * theta <= max_drift_A) | (k < first + 3))
        if np.array_equal(wider, sel):
            break
        sel = wider
    resid = g[ok] - A @ coef
    dof = max(int(ok.sum()) - 2, 1)
    cov = np.linalg.pinv(A.T @ A) * float(resid @ resid) / dof
    # Medians over overlapping pairs at neighbouring lags share most of their windows.
    cov *= max(window_A / stride_A, 1.0)
    # With a few lags the residuals can be small by chance: the medians' own sampling error is a floor.
    w = 1.0 / np.maximum(g_sigma[ok], 1e-12) ** 2
    cov_sampling = np.linalg.pinv(A.T @ (A * w[:, None]))
    slope_sigma = float(np.sqrt(max(cov[0, 0], cov_sampling[0, 0], 0.0)))
    # θ = √slope: σ_θ = σ_slope / (2θ), capped at the value √σ_slope that a zero slope gives.
    sigma = min(slope_sigma / (2 * theta), np.sqrt(slope_sigma)) if theta > 0 else np.sqrt(slope_sigma)
    # A pair (D, D + δ) reads short when |g·D − D| < 2|δ| and δ points towards g·D (about half
    # the directions): the median is safe while those pairs, half such windows, stay under a third.
    reach_A = 2 * theta * h_A[sel].max()
    near_symmetric = 0.5 * float(np.mean(_self_distance(sym, sym.slip_to_cartesian(da_A, db_A).reshape(-1, 2)) < reach_A))
    rates = []
    for gdir in (gx, gy):
        m = sel & np.isfinite(gdir)
        if m.sum() >= 2:
            c, *_ = np.linalg.lstsq(np.stack([h_A[m] ** 2, np.ones(m.sum())], 1), gdir[m], rcond=None)
            rates.append(np.sqrt(max(c[0], 0.0)))
    aniso = (float(abs(rates[0] - rates[1]) / np.mean(rates)) if len(rates) == 2 and theta > 2 * sigma
             else None)  # a ratio of two rates indistinguishable from 0 means nothing
    return {"theta_deg": float(np.rad2deg(theta)), "sigma_deg": float(np.rad2deg(sigma)),
            "noise_A": float(np.sqrt(max(coef[1], 0.0) / 2)),
            "lags_A": [float(h_A[sel].min()), float(h_A[sel].max())], "n_lags": int(sel.sum()),
            "lower_bound": bool(theta * first * stride_A > max_drift_A  # the first lag spans too much
                                or np.sqrt(max(coef[1], 0.0)) > max_drift_A  # flat at a high level
                                or near_symmetric > 1 / 3),
            "anisotropy": aniso}


def _self_distance(sym: StackingSymmetry, D_A: np.ndarray) -> np.ndarray:
    """min over g ≠ 1 of |g·D − D| (Å, lattice-reduced) for Cartesian slips D_A (n, 2)."""
    out = np.full(len(D_A), np.inf)
    for g in sym.rotations[1:]:
        out = np.minimum(out, np.linalg.norm(sym.wigner_seitz(D_A @ g.T - D_A), axis=-1))
    return out


@functools.cache
def _max_drift_cached(material: str, quantile: float) -> float:
    sym = symmetry_for(material)
    f = (np.stack(np.meshgrid(np.arange(80), np.arange(80)), -1).reshape(-1, 2) + 0.5) / 80
    return float(np.quantile(_self_distance(sym, f @ sym.lattice), quantile)) / 2


def max_drift_for(sym: StackingSymmetry, quantile: float = 0.25) -> float:
    """The drift (Å) up to which the slip metric between two readings still measures their true
    separation for most slips. Near a stacking that a symmetry of the group fixes (AA, AB, the
    half-lattice points), a slip D and its image g·D are close, and a drift δ from D reads as less
    than |δ| once |g·D − D| < 2|δ|. Returned: half the `quantile` of min over g ≠ 1 of |g·D − D|
    over the cell, so that at most that share of the window pairs is underestimated (the median
    ignores them). ReS2: 0.85 Å; 2H MoS2 / WS2 (six-fold group): 0.27 Å."""
    return _max_drift_cached(sym.material.name, quantile)
