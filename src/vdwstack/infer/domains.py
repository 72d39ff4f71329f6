"""Stacking domains of a sliding-window map, and the boundaries between them.

Segmentation is spatially regularised, so that one noisy window cannot make a domain:

1. the windows' network features (periodic, symmetry-invariant: averaging them never crosses a
   cell edge wrongly) are smoothed with a Gaussian of ``domain_smoothing_A``, then decoded;
2. candidate stackings are the greedy clusters of the smoothed readings (within the tolerance);
3. every window takes the stacking that minimises a Potts energy, (ΔD / tol)² to the stacking plus
   ``domain_coupling`` for each 4-neighbour with another label (iterated conditional modes from
   the nearest stacking: each sweep lowers the energy, a few sweeps converge on these small grids);
4. connected pieces smaller than ``min_domain_area_nm2`` join the neighbour they share most
   edge with;
5. a domain that is only the blur of a boundary joins the two domains it separates. A window
   whose crop straddles a boundary reads neither side's stacking (the network's response to a
   crop holding two stackings is some third reading, not their mix), so along every boundary runs
   a band about one window wide that can decode to a stacking of its own. A domain is such a band
   when nearly all its windows lie between the same two neighbouring domains, closer to them
   (distances summed, in strides) than one window side plus one stride: each of its windows' crops
   then covers part of both neighbours, and nothing in it is evidence of a third stacking. Its
   windows go to the side their features are nearer to (projection on the line between the two
   domains' mean features). A real domain narrower than that cannot be read by the map at this
   window size anyway; wider ones are kept. Measured with benchmarks/domains.py (W = 20 Å, 4 Å
   stride, limit 6): bands summed ≤ 4 strides; real stripes 37 Å wide, which the map shows ~27 Å
   wide (the mixed windows on both sides go to the neighbours), 7.8–10.

Boundaries: between each pair of touching domains, the raw (unsmoothed) features of the windows
near the interface are projected on the line from one domain's mean feature to the other's (0 on
one side, 1 on the other) and fitted with a straight error-function step: the boundary's line
(normal angle, offset), its width (the window's own box blur, W²/12 along the normal, removed) and
the 1σ uncertainty of each. The fit's covariance treats windows as independent, but windows
W apart overlap (stride s): it is scaled by W/s, and a systematic term of 0.1·W is added — the
network's response to a crop holding two stackings is not the linear mix the step model assumes
(measured with benchmarks/domains.py: mean error 1.8 Å for W = 20 Å). A straight step is the
simplest model that locates a boundary to a fraction of a window; curved boundaries get the best
straight chord. A boundary narrower than the window's blur has width 0 and ``width_resolved``
false: the map cannot tell its width.

Written here because the Potts model over a handful of labels on a few thousand windows is a few
lines with numpy, while graph-cut libraries (PyMaxflow) would add a compiled dependency for no gain
in accuracy at this size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import combinations

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter
from scipy.ndimage import label as connected_components
from scipy.optimize import least_squares
from scipy.special import erf

Readings = Mapping[str, np.ndarray]


def smooth_features(features: np.ndarray, sigma_windows: float) -> np.ndarray:
    """Features (rows, cols, dim) smoothed over the map by a Gaussian of `sigma_windows` windows."""
    if sigma_windows <= 0:
        return features
    return np.stack([gaussian_filter(features[..., k], sigma_windows, mode="nearest")
                     for k in range(features.shape[-1])], axis=-1)


def greedy_centres(values: Readings, distance: Callable, tol: float, min_members: int) -> list[int]:
    """Indices of the windows that seed clusters: the window with the most unclaimed neighbours
    within `tol` claims them, until every window is claimed; seeds of fewer than `min_members`
    windows are dropped (the Potts step gives their windows to a neighbour)."""
    flat = {k: v.ravel() for k, v in values.items()}
    n = len(next(iter(flat.values())))
    near = np.stack([distance({k: v[i:i + 1] for k, v in flat.items()}, flat) for i in range(n)]) <= tol
    free = np.ones(n, bool)
    seeds = []
    while free.any():
        counts = (near & free[None]).sum(axis=1) * free
        seed = int(np.argmax(counts))
        members = near[seed] & free
        if members.sum() >= min_members or not seeds:
            seeds.append(seed)
        free &= ~members
    return seeds


def potts_labels(cost: np.ndarray, coupling: float, sweeps: int = 20) -> np.ndarray:
    """Labels (rows, cols) minimising Σ cost[label] + coupling · #(4-neighbours with another label),
    by iterated conditional modes from the cheapest label. cost: (rows, cols, n_labels)."""
    labels = np.argmin(cost, axis=-1)
    R, C, K = cost.shape
    for _ in range(sweeps):
        changed = 0
        for parity in (0, 1):  # checkerboard: a window's neighbours are fixed while it is updated
            disagree = np.zeros((R, C, K))
            for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
                nb = np.roll(labels, shift, axis=axis)
                valid = np.ones((R, C), bool)
                if axis == 0:
                    valid[0 if shift == 1 else -1, :] = False
                else:
                    valid[:, 0 if shift == 1 else -1] = False
                disagree += valid[..., None] * (nb[..., None] != np.arange(K))
            new = np.argmin(cost + coupling * disagree, axis=-1)
            mask = (np.add.outer(np.arange(R), np.arange(C)) % 2) == parity
            changed += int((new[mask] != labels[mask]).sum())
            labels = np.where(mask, new, labels)
        if changed == 0:
            break
    return labels


def merge_small(labels: np.ndarray, min_windows: int) -> np.ndarray:
    """Connected pieces of fewer than `min_windows` windows join the label they share most edges
    with (repeated until none is left); returns labels renumbered 0..n−1 by piece."""
    labels = labels.copy()
    for _ in range(labels.size):
        pieces = []
        for k in np.unique(labels):
            comp, m = connected_components(labels == k)
            pieces += [comp == j for j in range(1, m + 1)]
        small = [p for p in pieces if p.sum() < min_windows]
        if not small or len(pieces) == 1:
            break
        piece = min(small, key=lambda p: p.sum())
        ring = _dilate(piece) & ~piece
        nb = labels[ring]
        if len(nb) == 0:
            break
        labels[piece] = np.bincount(nb).argmax()
    out = np.full(labels.shape, -1)
    n = 0
    for k in np.unique(labels):
        comp, m = connected_components(labels == k)
        for j in range(1, m + 1):
            out[comp == j] = n
            n += 1
    return out


def merge_boundary_bands(labels: np.ndarray, features: np.ndarray, band_windows: float,
                         fraction: float = 0.9) -> np.ndarray:
    """Domains lying as a thin band between two others join them (see step 5 of the module docstring).

    labels: (rows, cols) domains 0..n−1; features: (rows, cols, dim) window features; band_windows:
    the largest distance (in windows) from a band window to the nearest window of one neighbour plus
    that to the other; fraction: the share of a domain's windows that must be that close. Returns
    labels renumbered 0..n−1, unchanged where no domain is a band.
    """
    labels = labels.copy()
    while labels.max() + 1 >= 3:
        band = _find_band(labels, band_windows, fraction)
        if band is None:
            break
        c, a, b = band
        mask = labels == c
        labels[mask] = np.where(_between(features, labels, a, b, mask) < 0.5, a, b)
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    return labels


def _between(features: np.ndarray, labels: np.ndarray, a: int, b: int, where: np.ndarray) -> np.ndarray:
    """Features at `where` projected on the line between domains a's and b's mean features:
    0 at a's mean, 1 at b's."""
    fa, fb = features[labels == a].mean(0), features[labels == b].mean(0)
    d = fb - fa
    return ((features[where] - fa) @ d) / max(float(d @ d), 1e-12)


def _find_band(labels: np.ndarray, band_windows: float, fraction: float) -> tuple[int, int, int] | None:
    """The smallest domain c lying as a band between two touching domains a, b: (c, a, b), or None."""
    n = labels.max() + 1
    near = [distance_transform_edt(labels != k) for k in range(n)]  # windows to the nearest of k
    for c in sorted(range(n), key=lambda k: (labels == k).sum()):
        mask = labels == c
        touching = [k for k in range(n) if k != c and (_dilate(mask) & (labels == k)).any()]
        for a, b in combinations(touching, 2):
            if np.mean((near[a] + near[b])[mask] <= band_windows) >= fraction:
                return c, a, b
    return None


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def segment_domains(features: np.ndarray, decode: Callable[[np.ndarray], Readings], distance: Callable,
                    tol: float, coupling: float, smoothing_windows: float, min_windows: int,
                    window_windows: float = 0.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Label map (rows, cols) of the stacking domains and each domain's mask.

    features: (rows, cols, dim) network features of the windows; decode: features (n, dim) →
    readings {name: (n,)}; distance(a, b): ΔD (Å) or Δθ (°) between readings; tol: the distance
    that is one data-term unit; coupling: Potts cost of a boundary edge; smoothing_windows: σ of the
    feature smoothing in windows; min_windows: smallest domain (windows); window_windows: the
    window's side in strides (0: boundary bands are kept as domains).
    """
    R, C, dim = features.shape
    smooth = smooth_features(features, smoothing_windows)
    flat = smooth.reshape(-1, dim)
    values = decode(flat)
    seeds = greedy_centres(values, distance, tol, min_windows)
    centres = {k: v[seeds] for k, v in values.items()}
    cost = np.stack([distance({k: v[i:i + 1] for k, v in centres.items()}, values) for i in range(len(seeds))], -1)
    labels = potts_labels((cost.reshape(R, C, -1) / tol) ** 2, coupling)
    labels = merge_small(labels, min_windows)
    if window_windows > 0:
        labels = merge_boundary_bands(labels, features, window_windows + 1)
        labels = merge_small(labels, min_windows)  # a band split between its sides can leave crumbs
    return labels, [labels == k for k in range(labels.max() + 1)]


def domain_boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean map: windows whose right or lower neighbour belongs to another domain."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


BOUNDARY_SYSTEMATIC = 0.1  # of the window side: the position's systematic 1σ (see the module docstring)


def locate_boundaries(features: np.ndarray, labels: np.ndarray, xy_A: np.ndarray, window_A: float,
                      stride_A: float, reach_windows: int = 3) -> list[dict]:
    """Straight-step fits of the boundary between each pair of touching domains.

    features: (rows, cols, dim) raw window features; labels: domain map; xy_A: (rows, cols, 2)
    window centres (x, y) in Å. Returns per boundary: the two domain ids, the line n·r = offset
    (normal angle in degrees from +x towards +y, offset in Å), its 1σ position uncertainty along
    the normal (Å), its width (Å, the window blur removed) with 1σ, the chord length inside the map
    (Å) and the number of windows fitted.
    """
    out = []
    n_dom = labels.max() + 1
    for a in range(n_dom):
        for b in range(a + 1, n_dom):
            touch = (_dilate(labels == a) & (labels == b)) | (_dilate(labels == b) & (labels == a))
            if touch.sum() < 2:
                continue
            fit = _fit_step(features, labels, xy_A, a, b, touch, window_A, stride_A, reach_windows)
            if fit is not None:
                out.append(fit)
    return out


def _fit_step(features, labels, xy_A, a, b, touch, window_A, stride_A, reach) -> dict | None:
    near = touch.copy()
    for _ in range(reach):
        near = _dilate(near)
    use = near & ((labels == a) | (labels == b))
    s = _between(features, labels, a, b, use)
    xy = xy_A[use]
    ca, cb = xy_A[labels == a].mean(0), xy_A[labels == b].mean(0)
    phi0 = np.arctan2(*(cb - ca)[::-1])
    n0 = np.array([np.cos(phi0), np.sin(phi0)])
    rho0 = float(np.mean(xy_A[touch] @ n0))
    blur = window_A / np.sqrt(12.0)  # a window's box blur along the normal (1σ)

    def resid(p):
        phi, rho, w = p
        n = np.array([np.cos(phi), np.sin(phi)])
        return 0.5 * (1 + erf((xy @ n - rho) / (np.sqrt(2) * np.hypot(w, blur)))) - s

    if len(s) < 5:
        return None
    fit = least_squares(resid, [phi0, rho0, 1.0], bounds=([phi0 - 1.2, -np.inf, 0.0], [phi0 + 1.2, np.inf, 20 * window_A]))
    J = fit.jac
    dof = max(len(s) - 3, 1)
    var = float(fit.fun @ fit.fun) / dof
    # pinv: a width at its bound 0 has no slope there; overlapping windows are not independent.
    cov = np.linalg.pinv(J.T @ J) * var * max(window_A / stride_A, 1.0) ** 2
    phi, rho, w = fit.x
    n = np.array([np.cos(phi), np.sin(phi)])
    along = xy_A[touch] @ np.array([-n[1], n[0]])
    return {"domains": [int(a), int(b)], "normal_deg": float(np.rad2deg(phi) % 360), "offset_A": float(rho),
            "position_sigma_A": float(np.hypot(np.sqrt(max(cov[1, 1], 0)), BOUNDARY_SYSTEMATIC * window_A)),
            "width_A": float(w), "width_sigma_A": float(np.sqrt(max(cov[2, 2], 0))),
            "width_resolved": bool(w > np.sqrt(max(cov[2, 2], 0))), "normal_sigma_deg": float(np.rad2deg(np.sqrt(max(cov[0, 0], 0)))),
            "length_A": float(along.max() - along.min() + window_A / 2), "n_windows": int(use.sum()),
            "rms_residual": float(np.sqrt(var))}
