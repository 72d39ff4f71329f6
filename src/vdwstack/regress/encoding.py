"""Periodic, symmetry-invariant target encodings for slip and twist, and their decoders.

Slip: φ_j(D) = mean over the material's rotation group R of cos(2π (R g_j)·D) for a set of
reciprocal-lattice vectors g_j. Each feature is periodic in the lattice, even in D (D ≡ −D) and
invariant under the group, so equivalent slips share one target and nothing jumps at cell edges
or symmetry boundaries. Decoding: nearest feature vector on a fine grid of canonical slips, refined
locally.

Twist: ψ_n(θ) = cos(2π n θ / P), n = 1..N, P = 360°/r: periodic in P and even (θ ≡ −θ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vdwstack.structures.reciprocal import reciprocal_lattice
from vdwstack.structures.symmetry import StackingSymmetry, symmetry_for


@dataclass(frozen=True)
class SlipEncoding:
    """Encoder/decoder of one slip (Da, Db in Å) for one material."""

    material: str
    orders: int | None = None  # default: 3 for ±D only, 6 for C6 (see `max_order`)
    grid_step_A: float = 0.015

    @property
    def max_order(self) -> int:
        """Highest |h|, |k| of the reciprocal vectors used. C6-invariant features are nearly
        mirror-symmetric near AA (chirality appears only in high orders), so hexagonal materials
        need more orders to keep slips 0.05–0.1 Å apart distinguishable."""
        if self.orders is not None:
            return self.orders
        return 3 if self.sym.group_order == 2 else 6

    @cached_property
    def sym(self) -> StackingSymmetry:
        return symmetry_for(self.material)

    @cached_property
    def g_vectors(self) -> np.ndarray:
        """Representatives of the group orbits of the reciprocal vectors with |h|,|k| ≤ orders."""
        G = reciprocal_lattice(self.sym.lattice)
        reps, seen = [], []
        n = self.max_order
        for h in range(-n, n + 1):
            for k in range(-n, n + 1):
                if (h, k) == (0, 0):
                    continue
                g = np.array([h, k], float) @ G
                orbit = np.array([R @ g for R in self.sym.rotations] + [-R @ g for R in self.sym.rotations])
                if any(np.min(np.linalg.norm(orbit - s, axis=1)) < 1e-9 for s in seen):
                    continue
                seen.append(g)
                reps.append(g)
        return np.array(reps)

    @property
    def dim(self) -> int:
        return len(self.g_vectors)

    def encode(self, da_A, db_A) -> np.ndarray:
        """Features (..., dim) of slips (Da, Db) in Å."""
        D = self.sym.slip_to_cartesian(da_A, db_A)  # (..., 2)
        rot_g = np.einsum("rij,gj->rgi", self.sym.rotations, self.g_vectors)  # (R, G, 2)
        phase = 2 * np.pi * np.einsum("...i,rgi->...rg", D, rot_g)
        return np.cos(phase).mean(axis=-2).astype(np.float32)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        da, db = self.sym.slip_grid(self.grid_step_A)
        return da, db, self.encode(da, db).astype(np.float64)

    def decode(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (Da, Db) in Å whose features are nearest to `features` (..., dim)."""
        f = np.asarray(features, np.float64)
        shape = f.shape[:-1]
        f = f.reshape(-1, self.dim)
        da, db, table = self._table
        # ‖f − t‖² = ‖f‖² − 2 f·t + ‖t‖²: matrix products, in chunks to bound memory.
        t2 = (table**2).sum(1)[None]
        k = 4  # refine from the few nearest table entries: avoids stalling in a wrong basin
        cand = np.concatenate([np.argpartition(t2 - 2 * f[i:i + 256] @ table.T, k, axis=1)[:, :k]
                               for i in range(0, len(f), 256)])  # (N, k)
        f_rep = np.repeat(f, k, axis=0)
        # Start a hair off the grid point: at fold points (e.g. AA) the features have zero slope.
        x = self.sym.slip_to_cartesian(da[cand.ravel()], db[cand.ravel()]) + np.array([1.3e-3, 0.7e-3])
        q = np.einsum("rij,gj->rgi", self.sym.rotations, self.g_vectors)  # (R, G, 2)

        def residual(x):
            ph = 2 * np.pi * np.einsum("ni,rgi->nrg", x, q)
            return f_rep - np.cos(ph).mean(axis=1), ph

        r, ph = residual(x)
        for _ in range(12):  # Gauss–Newton on the analytic features, all starts at once
            J = -(2 * np.pi) * np.einsum("nrg,rgi->ngi", np.sin(ph), q) / len(q)  # (N, G, 2)
            JtJ = np.einsum("ngi,ngj->nij", J, J) + 1e-6 * np.eye(2)
            step = np.linalg.solve(JtJ, np.einsum("ngi,ng->ni", J, r)[..., None])[..., 0]
            step = np.clip(step, -self.grid_step_A, self.grid_step_A)
            todo = np.ones(len(x), bool)
            for scale in (1.0, 0.5, 0.25, 0.1):  # backtracking: keep only steps that improve the fit
                x_new = x + scale * step
                r_new, ph_new = residual(x_new)
                better = todo & ((r_new**2).sum(1) < (r**2).sum(1))
                x[better], r[better], ph[better] = x_new[better], r_new[better], ph_new[better]
                todo &= ~better
        pick = np.argmin((r**2).sum(1).reshape(-1, k), axis=1)
        x = x.reshape(-1, k, 2)[np.arange(len(f)), pick]
        out_a, out_b = self.sym.canonical_slip(*self.sym.cartesian_to_slip(x))
        return out_a.reshape(shape), out_b.reshape(shape)


@dataclass(frozen=True)
class TwistEncoding:
    """Encoder/decoder of the twist θ (degrees) for one material."""

    material: str
    harmonics: int = 3
    grid_step_deg: float = 0.01

    @cached_property
    def sym(self) -> StackingSymmetry:
        return symmetry_for(self.material)

    @property
    def dim(self) -> int:
        return self.harmonics

    def encode(self, theta_deg) -> np.ndarray:
        P = self.sym.twist_period_deg
        n = np.arange(1, self.harmonics + 1)
        t = np.asarray(theta_deg, float)[..., None]
        return np.cos(2 * np.pi * n * t / P).astype(np.float32)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.sym.twist_range_deg
        grid = np.arange(lo, hi + self.grid_step_deg / 2, self.grid_step_deg)
        return grid, self.encode(grid).astype(np.float64)

    def decode(self, features: np.ndarray) -> np.ndarray:
        """Folded θ (degrees) nearest to the features."""
        f = np.asarray(features, np.float64)
        shape = f.shape[:-1]
        grid, table = self._table
        d2 = (table**2).sum(1)[None] - 2 * f.reshape(-1, self.dim) @ table.T
        return grid[np.argmin(d2, axis=1)].reshape(shape)
