"""Is a translation experiment-like, and did it keep the atoms? Network-free metrics.

(a) style distance to experiment: radially averaged power spectrum and intensity histogram;
(b) content fidelity: atomic-column positions of a translation vs its input simulation (Å);
(c) slip read from Bragg-peak amplitudes (no network) before and after translation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter, maximum_filter
from scipy.stats import wasserstein_distance

from vdwstack.structures.reciprocal import dft_at, radial_profile, reciprocal_lattice
from vdwstack.structures.symmetry import symmetry_for


def _log_spectrum(img: np.ndarray) -> np.ndarray:
    _, p = radial_profile(img)
    return np.log10(p / p.sum() + 1e-20)


def style_distance(images: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> dict[str, float]:
    """Distances between two sets of same-size images normalized alike ([−1, 1]):
    mean |Δ log10 radial power spectrum| and the Wasserstein-1 distance of pixel histograms."""
    spec = np.mean([_log_spectrum(i) for i in images], axis=0)
    spec_ref = np.mean([_log_spectrum(i) for i in references], axis=0)
    hist = wasserstein_distance(np.concatenate([i.ravel() for i in images]),
                                np.concatenate([i.ravel() for i in references]))
    return {"power_spectrum": float(np.mean(np.abs(spec - spec_ref))), "histogram": float(hist)}


def find_columns(image: np.ndarray, pixel_size_A: float, blur_A: float = 0.3, min_separation_A: float = 1.2,
                 border_A: float = 2.0) -> np.ndarray:
    """Atomic-column positions (x, y) in Å: local maxima of the blurred image, refined by a
    3×3 parabola fit. Only clear columns (above mean + 0.5 std) away from the border."""
    sm = gaussian_filter(image.astype(np.float64), blur_A / pixel_size_A)
    size = max(3, int(round(min_separation_A / pixel_size_A)) | 1)
    peaks = (sm == maximum_filter(sm, size=size)) & (sm > sm.mean() + 0.5 * sm.std())
    b = int(np.ceil(border_A / pixel_size_A))
    peaks[:b] = peaks[-b:] = False
    peaks[:, :b] = peaks[:, -b:] = False
    r, c = np.nonzero(peaks)
    return np.column_stack(_refine(sm, r, c)[::-1]) * pixel_size_A


def _refine(sm: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def para(m, z, p):
        d = m - 2 * z + p
        return np.where(np.abs(d) > 1e-12, 0.5 * (m - p) / np.where(d == 0, 1, d), 0.0)

    dy = para(sm[r - 1, c], sm[r, c], sm[r + 1, c])
    dx = para(sm[r, c - 1], sm[r, c], sm[r, c + 1])
    return r + np.clip(dy, -0.5, 0.5), c + np.clip(dx, -0.5, 0.5)


def column_displacement_A(source: np.ndarray, translation: np.ndarray, pixel_size_A: float,
                          blur_A: float = 0.3, search_A: float = 0.5) -> dict[str, float]:
    """Column positions of `source`, re-found in `translation` within `search_A`: displacements (Å)."""
    cols = find_columns(source, pixel_size_A, blur_A)
    if len(cols) == 0:
        return {"mean_A": float("nan"), "p95_A": float("nan"), "n_columns": 0}
    sm = gaussian_filter(translation.astype(np.float64), blur_A / pixel_size_A)
    rad = max(1, int(round(search_A / pixel_size_A)))
    H, W = sm.shape
    disp = []
    for x, y in cols:
        r0, c0 = int(round(y / pixel_size_A)), int(round(x / pixel_size_A))
        if not (rad + 1 <= r0 < H - rad - 1 and rad + 1 <= c0 < W - rad - 1):
            continue
        win = sm[r0 - rad:r0 + rad + 1, c0 - rad:c0 + rad + 1]
        dr, dc = np.unravel_index(np.argmax(win), win.shape)
        rr, cc = _refine(sm, np.array([r0 - rad + dr]), np.array([c0 - rad + dc]))
        disp.append(np.hypot(cc[0] * pixel_size_A - x, rr[0] * pixel_size_A - y))
    disp = np.array(disp)
    return {"mean_A": float(disp.mean()), "p95_A": float(np.percentile(disp, 95)), "n_columns": int(len(disp))}


def image_frame_lattice(row: Mapping) -> np.ndarray:
    """Rows a, b of the sample's lattice in the image frame (rotation and strain applied), Å."""
    sym = symmetry_for(str(row["material"]))
    rot = np.deg2rad(float(row.get("rotation_deg", 0.0)))
    R = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    eps = np.array([[row.get("strain_xx", 0.0), row.get("strain_xy", 0.0)],
                    [row.get("strain_xy", 0.0), row.get("strain_yy", 0.0)]], float)
    return sym.lattice @ (R @ (np.eye(2) + eps)).T


def bragg_slip_A(bilayer: np.ndarray, monolayer: np.ndarray, row: Mapping, orders: int = 3,
                 k_max: float = 1.2) -> tuple[float, float]:
    """Slip (Da, Db) in Å from Bragg-peak amplitudes, without any network.

    For a bilayer of identical layers |F_bi(g)| ∝ |F_mono(g)|·2|cos(π g·D)|; D is fitted by a
    global search over the cell then refined. `monolayer` is the bottom layer alone (same optics).
    Returns the canonical representative.
    """
    lat = image_frame_lattice(row)
    p = float(row["pixel_size_A"])
    G = reciprocal_lattice(lat)
    hk = np.array([(h, k) for h in range(-orders, orders + 1) for k in range(0, orders + 1) if k > 0 or h > 0], float)
    g = hk @ G
    g = g[np.linalg.norm(g, axis=1) < k_max]
    hk = np.linalg.solve(G.T, g.T).T
    fm = np.abs(dft_at(monolayer, p, g))
    fb = np.abs(dft_at(bilayer, p, g))
    keep = fm > 0.05 * fm.max()
    hk, fm, fb = hk[keep], fm[keep], fb[keep]

    def cost(uv: np.ndarray) -> np.ndarray:
        model = fm[None] * 2 * np.abs(np.cos(np.pi * (np.atleast_2d(uv) @ hk.T)))  # g·D = hk·uv
        c = np.sum(model * fb[None], axis=1) / (np.sum(model**2, axis=1) + 1e-30)
        return np.sum((fb[None] - c[:, None] * model) ** 2, axis=1)

    u = np.linspace(0, 1, 121)[:-1]
    grid = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    from scipy.optimize import minimize

    uv = minimize(lambda v: cost(v)[0], grid[np.argmin(cost(grid))], method="Nelder-Mead",
                  options={"xatol": 1e-6, "fatol": 1e-14}).x
    d_img = uv @ lat  # image-frame Cartesian slip
    sym = symmetry_for(str(row["material"]))
    # Back to the lattice frame (undo rotation and strain), then canonical (Da, Db).
    M = np.linalg.solve(sym.lattice, lat).T  # maps lattice-frame vectors to image-frame
    d_lat = np.linalg.solve(M, d_img)
    da, db = sym.canonical_slip(*sym.cartesian_to_slip(d_lat))
    return float(da), float(db)
