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

from vdwstack.lattice_fft import reciprocal_lattice
from vdwstack.symmetry import StackingSymmetry, symmetry_for


@dataclass(frozen=True)
class SlipEncoding:
    """Encoder/decoder of one slip (Da, Db in Å) for one material."""

    material: str
    orders: int = 3
    grid_step_A: float = 0.04

    @cached_property
    def sym(self) -> StackingSymmetry:
        return symmetry_for(self.material)

    @cached_property
    def g_vectors(self) -> np.ndarray:
        """Representatives of the group orbits of the reciprocal vectors with |h|,|k| ≤ orders."""
        G = reciprocal_lattice(self.sym.lattice)
        reps, seen = [], []
        for h in range(-self.orders, self.orders + 1):
            for k in range(-self.orders, self.orders + 1):
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
        # ‖f − t‖² = ‖f‖² − 2 f·t + ‖t‖²: one matrix product for the whole batch.
        d2 = (table**2).sum(1)[None] - 2 * f @ table.T
        best = np.argmin(d2, axis=1)
        # Start a hair off the grid point: at fold points (e.g. AA) the features have zero slope.
        x = self.sym.slip_to_cartesian(da[best], db[best]) + np.array([1.3e-3, 0.7e-3])
        q = np.einsum("rij,gj->rgi", self.sym.rotations, self.g_vectors)  # (R, G, 2)
        for _ in range(4):  # Gauss–Newton on the analytic features, all samples at once
            ph = 2 * np.pi * np.einsum("ni,rgi->nrg", x, q)
            r = f - np.cos(ph).mean(axis=1)  # (N, G)
            J = -(2 * np.pi) * np.einsum("nrg,rgi->ngi", np.sin(ph), q) / len(q)  # (N, G, 2)
            JtJ = np.einsum("ngi,ngj->nij", J, J) + 1e-6 * np.eye(2)
            step = np.linalg.solve(JtJ, np.einsum("ngi,ng->ni", J, r)[..., None])[..., 0]
            x = x + np.clip(step, -self.grid_step_A, self.grid_step_A)
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
