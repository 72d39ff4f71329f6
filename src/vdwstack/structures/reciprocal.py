"""Network-free lattice measurements from an image's Fourier transform.

- Bragg-peak phases at exact reciprocal-lattice vectors (direct DFT, not snapped to the FFT grid)
  give the translation of a lattice between two images;
- the classical twist estimate: angle between the two sets of first-order Bragg peaks.
Images are [row, col] = [y, x] with x = col·p, y = row·p; frequencies k in 1/Å.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter

from vdwstack.structures.materials import get_material


def reciprocal_lattice(lattice_2d: np.ndarray) -> np.ndarray:
    """Rows g1, g2 (1/Å) with a_i·g_j = δ_ij (no 2π)."""
    return np.linalg.inv(np.asarray(lattice_2d, float)).T


def _window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def dft_at(image: np.ndarray, pixel_size_A: float, k: np.ndarray, window: bool = True) -> np.ndarray:
    """Fourier coefficients Σ w·I(r) e^{−2πi k·r} at arbitrary frequencies k (1/Å), shape (n, 2)."""
    H, W = image.shape
    img = image - image.mean()
    if window:
        img = img * _window((H, W))
    x = np.arange(W) * pixel_size_A
    y = np.arange(H) * pixel_size_A
    k = np.atleast_2d(k)
    ex = np.exp(-2j * np.pi * k[:, 0:1] * x[None])  # (n, W)
    ey = np.exp(-2j * np.pi * k[:, 1:2] * y[None])  # (n, H)
    return np.einsum("nh,hw,nw->n", ey, img, ex)


def lattice_shift_A(image_a: np.ndarray, image_b: np.ndarray, pixel_size_A: float, lattice_2d: np.ndarray,
                    orders: int = 2) -> np.ndarray:
    """Translation t (Å, Cartesian) with image_b(r) ≈ image_a(r − t), modulo the lattice.

    Least-squares fit of the phase differences of the low-order Bragg peaks (|h|, |k| ≤ orders),
    weighted by their amplitude. Returns the Wigner–Seitz-reduced t.
    """
    G = reciprocal_lattice(lattice_2d)
    hk = np.array([(h, k) for h in range(-orders, orders + 1) for k in range(0, orders + 1)
                   if (k > 0 or h > 0)], float)
    g = hk @ G
    fa, fb = dft_at(image_a, pixel_size_A, g), dft_at(image_b, pixel_size_A, g)
    w = np.abs(fa) * np.abs(fb)
    keep = w > 1e-3 * w.max()
    dphi = np.angle(fb[keep] * np.conj(fa[keep]))  # = −2π g·t (mod 2π)
    hk_k, w_k = hk[keep], w[keep]
    lat = np.asarray(lattice_2d, float)

    def score(uv):  # g·t = hk·uv for t = uv @ lat
        return -np.sum(w_k * np.cos(dphi + 2 * np.pi * (hk_k @ np.atleast_2d(uv).T).T), axis=-1)

    # Global search over one cell (the phase fit has many local optima), then local refinement.
    u = np.linspace(0, 1, 101)[:-1]
    grid = np.stack(np.meshgrid(u, u, indexing="ij"), axis=-1).reshape(-1, 2)
    start = grid[np.argmin(score(grid))]
    from scipy.optimize import minimize

    uv = minimize(lambda v: score(v)[0], start, method="Nelder-Mead",
                  options={"xatol": 1e-7, "fatol": 1e-12}).x
    t = uv @ lat
    frac = np.linalg.solve(np.asarray(lattice_2d, float).T, t)
    return (frac - np.round(frac)) @ np.asarray(lattice_2d, float)


def power_spectrum(image: np.ndarray) -> np.ndarray:
    """Windowed, centred power spectrum |FFT|²."""
    img = (image - image.mean()) * _window(image.shape)
    return np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2


def fft_twist_deg(image: np.ndarray, pixel_size_A: float, material: str, n_peaks: int | None = None) -> float:
    """Classical twist estimate (degrees, in [0°, 180°/r]): angle between the two sets of first-order
    Bragg peaks of the two layers, found as the strongest maxima on the first-order ring.

    Only sees twists whose spots are resolved; it cannot tell θ from 60° − θ in hexagonal MX2.
    """
    mat = get_material(material)
    G = reciprocal_lattice(mat.lattice_2d)
    g1 = np.linalg.norm(G, axis=1).min()
    H, W = image.shape
    ps = power_spectrum(image)
    ky = np.fft.fftshift(np.fft.fftfreq(H, pixel_size_A))[:, None]
    kx = np.fft.fftshift(np.fft.fftfreq(W, pixel_size_A))[None, :]
    kr = np.hypot(kx, ky)
    ring = (kr > 0.85 * g1) & (kr < 1.15 * np.linalg.norm(G, axis=1).max())
    peaks = (ps == maximum_filter(ps, size=3)) & ring
    vals = ps[peaks]
    n_sym = 2 * mat.rotation_order if mat.rotation_order % 2 else 2 * mat.rotation_order
    n = n_peaks or 2 * n_sym
    idx = np.argsort(-vals)[:n]
    rows, cols = np.nonzero(peaks)
    rows, cols = rows[idx], cols[idx]
    # Sub-pixel peak positions: intensity centroid of the 3x3 neighbourhood.
    dk_y, dk_x = 1.0 / (H * pixel_size_A), 1.0 / (W * pixel_size_A)
    pk_y, pk_x = np.empty(len(rows)), np.empty(len(rows))
    for i, (r, c) in enumerate(zip(rows, cols)):
        patch = ps[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
        rr, cc = np.mgrid[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
        pk_y[i] = (patch * rr).sum() / patch.sum()
        pk_x[i] = (patch * cc).sum() / patch.sum()
    ang = np.rad2deg(np.arctan2((pk_y - H // 2) * dk_y, (pk_x - W // 2) * dk_x))
    period = 360.0 / n_sym  # spot pattern of one layer repeats every 60° (hexagonal)
    a = np.mod(ang, period)
    # Two clusters on a circle of circumference `period`: split at the largest gap.
    a_sorted = np.sort(a)
    gaps = np.diff(np.concatenate([a_sorted, a_sorted[:1] + period]))
    if len(a_sorted) < 2:
        return 0.0
    order = np.argsort(-gaps)
    # With two clusters the two largest gaps separate them.
    cut1, cut2 = sorted(order[:2])
    c1 = a_sorted[cut1 + 1:cut2 + 1]
    c2 = np.concatenate([a_sorted[cut2 + 1:], a_sorted[:cut1 + 1] + period])
    if len(c1) == 0 or len(c2) == 0:
        return 0.0
    m1 = np.angle(np.mean(np.exp(2j * np.pi * c1 / period))) * period / (2 * np.pi)
    m2 = np.angle(np.mean(np.exp(2j * np.pi * c2 / period))) * period / (2 * np.pi)
    d = abs(m1 - m2) % period
    return float(min(d, period - d))


def radial_profile(image: np.ndarray, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: (q in cycles/px, mean power) for q ≤ 0.5."""
    H, W = image.shape
    ps = power_spectrum(image)
    qy = np.fft.fftshift(np.fft.fftfreq(H))[:, None]
    qx = np.fft.fftshift(np.fft.fftfreq(W))[None, :]
    q = np.hypot(qx, qy)
    n_bins = n_bins or min(H, W) // 2
    edges = np.linspace(0, 0.5, n_bins + 1)
    idx = np.clip(np.digitize(q.ravel(), edges) - 1, 0, n_bins)
    sums = np.bincount(idx, weights=ps.ravel(), minlength=n_bins + 1)[:n_bins]
    counts = np.bincount(idx, minlength=n_bins + 1)[:n_bins]
    return 0.5 * (edges[1:] + edges[:-1]), sums / np.maximum(counts, 1)


def estimate_pixel_size_A(image: np.ndarray, material: str, search_A: tuple[float, float] = (0.015, 0.4),
                          n_spots: int = 12) -> float:
    """Pixel size (Å/px) from the image's own Bragg spots matched to the material's lattice.

    Each strong spot is tried as each low-order reciprocal-lattice vector g of the material (which
    fixes a pixel size and an in-plane rotation); the hypothesis whose predicted spot pattern
    collects the most (log, background-relative) power wins, and is refined on a fine grid.
    """
    from scipy.ndimage import gaussian_filter

    mat = get_material(material)
    G = reciprocal_lattice(mat.lattice_2d)
    hk = np.array([(h, k) for h in range(-3, 4) for k in range(-3, 4) if (h, k) != (0, 0)], float)
    g = hk @ G
    g = g[np.linalg.norm(g, axis=1) < 1.1]  # orders the probe transfers (≲ 2 k_aperture)
    H, W = image.shape
    n = min(H, W)
    img = image[(H - n) // 2:(H - n) // 2 + n, (W - n) // 2:(W - n) // 2 + n]
    ps = np.log(power_spectrum(img) + 1e-30)
    rel = ps - gaussian_filter(ps, n / 32)  # power relative to the local background
    c = n // 2
    qy, qx = np.mgrid[0:n, 0:n]
    qr = np.hypot(qy - c, qx - c) / n  # cycles/px
    cand = (rel == maximum_filter(rel, size=5)) & (qr > 0.01) & (qr < 0.45) & (qx >= c)
    rows, cols = np.nonzero(cand)
    order = np.argsort(-rel[rows, cols])[:n_spots]
    spots = np.column_stack([(cols[order] - c) / n, (rows[order] - c) / n])  # (qx, qy) cycles/px

    strong = spots * n + c  # pixel positions of the detected spots
    thresh = np.median(rel[rows[order], cols[order]]) * 0.3
    rel_max = maximum_filter(rel, size=3)

    def score(p: float, phi: float) -> float:
        """Explained strong spots minus predicted spots that are missing."""
        R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
        pred = (g @ R.T) * p * n + c
        ok = (pred > 1).all(axis=1) & (pred < n - 2).all(axis=1)
        if ok.sum() < 4:
            return -np.inf
        pred = pred[ok]
        d = np.linalg.norm(strong[:, None] - pred[None], axis=-1)
        explained = np.sum(d.min(axis=1) < 2.0)
        px = np.round(pred).astype(int)
        missing = np.sum(rel_max[px[:, 1], px[:, 0]] < thresh)
        return float(explained - 0.5 * missing + 1e-3 * np.clip(rel_max[px[:, 1], px[:, 0]], 0, None).mean())

    best = (-np.inf, None, None)
    for sp in spots:
        for gv in g:
            p = np.linalg.norm(sp) / np.linalg.norm(gv)
            if not search_A[0] <= p <= search_A[1]:
                continue
            phi = np.arctan2(sp[1], sp[0]) - np.arctan2(gv[1], gv[0])
            sc = score(p, phi)
            if sc > best[0]:
                best = (sc, p, phi)
    if best[1] is None:
        raise ValueError(f"no {material} lattice found in the image's Fourier transform")
    _, p0, phi0 = best
    fine = [(score(p, ph), p) for p in p0 * np.linspace(0.98, 1.02, 41) for ph in phi0 + np.deg2rad(np.linspace(-1, 1, 9))]
    return float(max(fine)[1])
