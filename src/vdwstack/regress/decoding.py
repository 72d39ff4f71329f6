"""Numerical decoding shared by the slip encodings: the nearest rows of a feature table, optionally
weighted per feature, and a batched Gauss–Newton refinement.

Written by hand: the table search is a k-nearest query of thousands of feature vectors against a
table of ~10⁴ rows per call (KD-trees lose their advantage in 42–108 dimensions; brute force as matrix
products is fast), and the refinement solves many independent 2- or 4-parameter least-squares
problems at once (scipy.optimize.least_squares solves one at a time).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NearestRows", "TableSearch", "gauss_newton", "sqrt_weights"]


class NearestRows:
    """The k rows of a feature table (T, dim) nearest to each query (Euclidean), by
    ‖f − t‖² = ‖f‖² − 2 f·t + ‖t‖² as matrix products. The table is kept transposed and contiguous
    (BLAS reads it ~5× faster than a transposed view) and queries go in chunks whose (chunk, T)
    distances stay ≤ 2 MB: larger temporaries tend to be fresh mmaps (glibc), paying a page fault
    per 4 kB on every call — with 16 MB chunks in a process that had run torch, decoding 344 ReS2
    readings took 2–3.5 s instead of 0.3 s, longer than the network's forward passes."""

    def __init__(self, table: np.ndarray):
        self.table_t = np.ascontiguousarray(np.asarray(table, np.float64).T)  # (dim, T)
        self.norms = (self.table_t**2).sum(0)[None]  # (1, T)

    def nearest(self, f: np.ndarray, k: int) -> np.ndarray:
        """Indices (N, k) into the table for queries f (N, dim); the k are in no particular order."""
        n = self.table_t.shape[1]
        k = min(k, n)
        rows = max(1, 2**18 // n)
        out = [np.argpartition(self.norms - 2 * (f[i:i + rows] @ self.table_t), k - 1, axis=1)[:, :k]
               for i in range(0, len(f), rows)]
        return np.concatenate(out) if out else np.zeros((0, k), int)


def sqrt_weights(weights, dim: int) -> np.ndarray | None:
    """√w (dim,) of per-feature decoding weights, normalised to mean w = 1; None for equal weights.

    Raises ValueError for a wrong length or weights that are not finite and > 0."""
    if weights is None:
        return None
    w = np.asarray(weights, np.float64).ravel()
    if w.shape != (dim,):
        raise ValueError(f"decoding weights: {w.size} values for {dim} features")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("decoding weights must be finite and > 0")
    return np.sqrt(w / w.mean())


class TableSearch:
    """The nearest rows of a feature table (T, dim) in the metric Σ_j w_j (f_j − t_j)²: the table's
    NearestRows for equal weights, a √w-scaled copy for others (one kept: a model has one w)."""

    def __init__(self, table: np.ndarray):
        self.table, self.plain, self.scaled = table, NearestRows(table), {}

    def nearest(self, f: np.ndarray, k: int, s: np.ndarray | None = None) -> np.ndarray:
        """Indices (N, k) for queries f (N, dim); `s`: √w from :func:`sqrt_weights` (None: equal)."""
        if s is None:
            return self.plain.nearest(f, k)
        key = s.tobytes()
        if key not in self.scaled:
            self.scaled = {key: NearestRows(self.table * s)}
        return self.scaled[key].nearest(f * s, k)


def gauss_newton(x: np.ndarray, residual, jacobian, max_step: float, iterations: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Damped Gauss–Newton for many starts at once (the decoders' local refinement).

    x: (N, ...) parameters of N independent fits; ``residual(x) -> (r (N, P), aux)`` with r = target
    − model and aux (N, ...) what ``jacobian(aux) -> (N, P, x[0].size)`` (d model / d x) needs.
    Steps are clipped to ±max_step per coordinate and backtracked (1, ½, ¼, 0.1): only steps that
    lower a fit's squared residual are kept. Returns the refined x and its residuals."""
    x = np.array(x, float)
    r, aux = residual(x)
    n = x[0].size
    for _ in range(iterations):
        J = jacobian(aux)
        JtJ = np.einsum("npi,npj->nij", J, J) + 1e-6 * np.eye(n)
        step = np.linalg.solve(JtJ, np.einsum("npi,np->ni", J, r)[..., None])[..., 0].reshape(x.shape)
        step = np.clip(step, -max_step, max_step)
        todo = np.ones(len(x), bool)
        for scale in (1.0, 0.5, 0.25, 0.1):
            x_new = x + scale * step
            r_new, aux_new = residual(x_new)
            better = todo & ((r_new**2).sum(1) < (r**2).sum(1))
            x[better], r[better], aux[better] = x_new[better], r_new[better], aux_new[better]
            todo &= ~better
    return x, r
