"""Periodic, symmetry-invariant target encodings for slip and twist, and their decoders.

Slip: φ_j(D) = mean over the material's rotation group R of cos(2π (R g_j)·D) for a set of
reciprocal-lattice vectors g_j. Each feature is periodic in the lattice, even in D (D ≡ −D) and
invariant under the group, so equivalent slips share one target and nothing jumps at cell edges
or symmetry boundaries. Decoding: nearest feature vector on a fine grid of canonical slips, refined
locally — optionally weighted per feature (a trained network reads high-order features with larger
errors; weighting each by 1 / its residual variance is the maximum-likelihood reading for
independent Gaussian feature errors: see ``Regressor`` and the model card's ``decoding`` block).

Trilayer slips: the same with pairs of reciprocal vectors acting on both slips at once
(:class:`TrilayerSlipEncoding`), invariant under the 6 orders of the layers along the beam
(``TRILAYER_ORDERS``: the projection barely tells them apart, so a target that did would ask the
network for what the image does not hold; the closed loop fits the orders).

Twist: ψ_n(θ) = cos(2π n θ / P), n = 1..N, P = 360°/r: periodic in P and even (θ ≡ −θ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vdwstack.regress.decoding import TableSearch, gauss_newton, sqrt_weights
from vdwstack.structures.reciprocal import reciprocal_lattice
from vdwstack.structures.symmetry import TRILAYER_ORDERS, StackingSymmetry, symmetry_for


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

    @cached_property
    def _search(self) -> TableSearch:
        return TableSearch(self._table[2])

    def decode(self, features: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (Da, Db) in Å whose features are nearest to `features` (..., dim), in the
        metric Σ_j w_j (f_j − φ_j(D))² with `weights` w (dim,) (None: equal)."""
        f = np.asarray(features, np.float64)
        shape = f.shape[:-1]
        f = f.reshape(-1, self.dim)
        s = sqrt_weights(weights, self.dim)
        scale = np.ones(self.dim) if s is None else s  # √w
        da, db, _ = self._table
        k = 4  # refine from the few nearest table entries: avoids stalling in a wrong basin
        cand = self._search.nearest(f, k, s)  # (N, k)
        f_rep = np.repeat(f, k, axis=0)
        # Start a hair off the grid point: at fold points (e.g. AA) the features have zero slope.
        x = self.sym.slip_to_cartesian(da[cand.ravel()], db[cand.ravel()]) + np.array([1.3e-3, 0.7e-3])
        q = np.einsum("rij,gj->rgi", self.sym.rotations, self.g_vectors)  # (R, G, 2)

        def residual(x):
            ph = 2 * np.pi * np.einsum("ni,rgi->nrg", x, q)
            return (f_rep - np.cos(ph).mean(axis=1)) * scale, ph

        def jacobian(ph):  # d features / d (x, y), weighted: (N, G, 2)
            return -(2 * np.pi) * np.einsum("nrg,rgi->ngi", np.sin(ph), q) / len(q) * scale[:, None]

        x, r = gauss_newton(x, residual, jacobian, self.grid_step_A, iterations=12)
        pick = np.argmin((r**2).sum(1).reshape(-1, k), axis=1)
        x = x.reshape(-1, k, 2)[np.arange(len(f)), pick]
        out_a, out_b = self.sym.canonical_slip(*self.sym.cartesian_to_slip(x))
        return out_a.reshape(shape), out_b.reshape(shape)


@dataclass(frozen=True)
class TrilayerSlipEncoding:
    """Encoder/decoder of a trilayer's two slips (D1 = layer 2 − layer 1, D2 = layer 3 − layer 2).

    φ_(g1,g2)(D1, D2) = mean over the group R and the layer orders L of cos(2π (R g1·D1' + R g2·D2')),
    (D1', D2') = L (D1, D2). One rotation turns both slips (the stack turns as a whole); an order L
    acts on the pair (g1, g2) by its transpose. Invariant under the orders, the features depend on
    the set of layer positions {0, D1, D1 + D2} only — what the projection shows. Single-slip
    features (g1 or g2 = 0) alone would lose the relative sign of the slips: (D1, D2) and (D1, −D2)
    are different trilayers.
    """

    material: str
    orders: int = 2
    grid_step_A: float = 0.4

    @cached_property
    def sym(self) -> StackingSymmetry:
        return symmetry_for(self.material)

    @property
    def max_order(self) -> int:
        """Highest |h|, |k| of the reciprocal vectors used (as :attr:`SlipEncoding.max_order`)."""
        return self.orders

    def _images(self, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        """The pair's images under the group, the layer orders and negation: (M, 2, 2)."""
        out = []
        for R in self.sym.rotations:
            for L in TRILAYER_ORDERS:
                a, b = L[0, 0] * g1 + L[1, 0] * g2, L[0, 1] * g1 + L[1, 1] * g2
                for sgn in (1.0, -1.0):
                    out.append(sgn * np.stack([R @ a, R @ b]))
        return np.array(out)

    @cached_property
    def pairs(self) -> np.ndarray:
        """Orbit representatives (P, 2, 2) of the reciprocal-vector pairs (g1, g2), |h|, |k| ≤ orders."""
        G = reciprocal_lattice(self.sym.lattice)
        to_index = np.linalg.inv(G)  # Cartesian (1/Å) -> integer Miller indices
        n = self.orders
        vecs = [np.array([h, k], float) @ G for h in range(-n, n + 1) for k in range(-n, n + 1)]
        reps: list[np.ndarray] = []
        seen: set[tuple[int, ...]] = set()
        for g1 in vecs:
            for g2 in vecs:
                if not (np.any(g1) or np.any(g2)):
                    continue
                # An orbit is named by the smallest index tuple of its images, so each pair is checked
                # in O(1) against the orbits seen (comparing with every representative's images took
                # 11 s at orders 2, each time a trilayer model was loaded). The first pair met of each
                # orbit stays its representative: the features' order is that of trained models.
                images = np.rint(self._images(g1, g2) @ to_index).astype(np.int64).reshape(-1, 4)
                key = min(map(tuple, images.tolist()))
                if key in seen:
                    continue
                seen.add(key)
                reps.append(np.stack([g1, g2]))
        return np.array(reps)

    @cached_property
    def _orbits(self) -> np.ndarray:
        """(M, P, 2, 2): every pair's images under the group and the layer orders (cos is even)."""
        return np.stack([self._images(*pair)[0::2] for pair in self.pairs], axis=1)

    @property
    def dim(self) -> int:
        return len(self.pairs)

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, P) and phases (N, M, P) of Cartesian slips x (N, 2, 2)."""
        ph = 2 * np.pi * np.einsum("nsi,mpsi->nmp", x, self._orbits)
        return np.cos(ph).mean(axis=1), ph

    def encode(self, da_A, db_A, da2_A, db2_A) -> np.ndarray:
        """Features (..., dim) of the slips (Da, Db), (Da2, Db2) in Å."""
        d1 = self.sym.slip_to_cartesian(da_A, db_A)
        d2 = self.sym.slip_to_cartesian(da2_A, db2_A)
        shape = d1.shape[:-1]
        f, _ = self._features(np.stack([d1.reshape(-1, 2), d2.reshape(-1, 2)], axis=1))
        return f.reshape(*shape, self.dim).astype(np.float32)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Coarse grid: D1 canonical, D2 anywhere in the cell; Cartesian (T, 2, 2) and features (T, P)."""
        da1, db1 = self.sym.slip_grid(self.grid_step_A)
        lat = self.sym.lattice
        n_a = max(2, int(np.ceil(np.linalg.norm(lat[0]) / self.grid_step_A)))
        n_b = max(2, int(np.ceil(np.linalg.norm(lat[1]) / self.grid_step_A)))
        u, v = np.meshgrid(np.arange(n_a) / n_a, np.arange(n_b) / n_b, indexing="ij")
        d2 = self.sym.wigner_seitz(np.stack([u.ravel(), v.ravel()], -1) @ lat)
        d1 = self.sym.slip_to_cartesian(da1, db1)
        x = np.stack([np.repeat(d1, len(d2), axis=0), np.tile(d2, (len(d1), 1))], axis=1)
        f = np.concatenate([self._features(x[i:i + 4096])[0] for i in range(0, len(x), 4096)])
        return x, f

    @cached_property
    def _search(self) -> TableSearch:
        return TableSearch(self._table[1])

    def decode(self, features: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(Da, Db, Da2, Db2) in Å whose features are nearest to `features` (..., dim) in the metric
        weighted by `weights` (dim,) (None: equal), in the layer order that keeps both slips
        shortest (see `_canonical`)."""
        f = np.asarray(features, np.float64)
        shape = f.shape[:-1]
        f = f.reshape(-1, self.dim)
        s = sqrt_weights(weights, self.dim)
        scale = np.ones(self.dim) if s is None else s  # √w
        xt, _ = self._table
        k = 4
        cand = self._search.nearest(f, k, s)
        f_rep = np.repeat(f, k, axis=0)
        x = xt[cand.ravel()] + np.array([[1.3e-3, 0.7e-3], [0.9e-3, -1.1e-3]])
        q = self._orbits

        def residual(x):
            f_x, ph = self._features(x)
            return (f_rep - f_x) * scale, ph

        def jacobian(ph):  # d features / d (D1, D2), weighted: (N, P, 4)
            J = -(2 * np.pi) * np.einsum("nmp,mpsi->npsi", np.sin(ph), q).reshape(len(ph), self.dim, 4) / len(q)
            return J * scale[:, None]

        x, r = gauss_newton(x, residual, jacobian, self.grid_step_A, iterations=15)
        pick = np.argmin((r**2).sum(1).reshape(-1, k), axis=1)
        x = x.reshape(-1, k, 2, 2)[np.arange(len(f)), pick]
        d1, d2 = self._canonical(x)
        (a1, b1), (a2, b2) = self.sym.cartesian_to_slip(d1), self.sym.cartesian_to_slip(d2)
        return a1.reshape(shape), b1.reshape(shape), a2.reshape(shape), b2.reshape(shape)

    def _canonical(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One representative (Cartesian D1, D2; each (N, 2)) of each pair's orbit under the layer
        orders and the group: the order with the smallest |D1| + |D2| (ties: the smaller |D1|),
        turned by the rotation that makes D1 canonical (D2 turns with it)."""
        sym = self.sym
        best1, best2 = np.empty_like(x[:, 0]), np.empty_like(x[:, 1])
        score = np.full(len(x), np.inf)
        for L in TRILAYER_ORDERS:
            d1 = sym.wigner_seitz(L[0, 0] * x[:, 0] + L[0, 1] * x[:, 1])
            d2 = sym.wigner_seitz(L[1, 0] * x[:, 0] + L[1, 1] * x[:, 1])
            n1 = np.linalg.norm(d1, axis=1)
            s = np.round(n1 + np.linalg.norm(d2, axis=1), 4) + 1e-6 * n1
            take = s < score - 1e-9
            best1[take], best2[take], score[take] = d1[take], d2[take], s[take]
        target = sym.canonical_cartesian(best1)
        out2 = np.empty_like(best2)
        for i in range(len(x)):
            R = min(sym.rotations, key=lambda R: float(np.linalg.norm(sym.wigner_seitz(R @ best1[i]) - target[i])))
            out2[i] = sym.wigner_seitz(R @ best2[i])
        return target, out2


# A twist reading's alignment (θ or its partner θ_max − θ: AA-like vs AA′-like) counts as decided when
# the odd harmonics of its features support it by at least this fraction of the encoding's own
# (:meth:`TwistEncoding.alignment_evidence`). Correct readings scored ≥ 0.71 on the demo's and the
# CPU-hour models' own test series (210 images); of two confidently swapped small twists one scored
# 0.25 (flagged), the other 0.86 (not): the flag catches the network's doubt, not every swap. The
# six-harmonic CPU-hour model, decoded near the alignments from its sixth harmonic: ≥ 0.63 on its own
# 90 (0.67 by the nearest encoding; the lowest, a 0.5° twist, now read at 0.84° instead of 2.26°).
ALIGNMENT_EVIDENCE_MIN = 0.5


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

    @property
    def refine_harmonic(self) -> int:
        """The harmonic that :meth:`decode` reads θ from near an aligned stacking: the highest even
        one (the odd ones also carry the alignment, θ versus θ_max − θ), the first if there is none."""
        return self.harmonics - self.harmonics % 2 if self.harmonics >= 2 else 1

    @property
    def refine_reach_deg(self) -> float:
        """Distance from an aligned stacking (:attr:`StackingSymmetry.aligned_twists_deg`: 0° and, for
        hexagonal MX2, 60°) within which :meth:`decode` reads θ from :attr:`refine_harmonic` alone: a
        quarter of its period."""
        return self.sym.twist_period_deg / (4 * self.refine_harmonic)

    def decode(self, features: np.ndarray) -> np.ndarray:
        """Folded θ (degrees) for features [..., dim]: the twist whose encoding is nearest, then,
        within :attr:`refine_reach_deg` of an aligned stacking, the twist that the highest even
        harmonic m alone gives on that side.

        Why the second step: near an aligned stacking the network is least sure of the alignment
        (AA-like or AA′-like, θ or θ_max − θ), and it hedges the way it was trained to, toward the
        mean of the two encodings: the odd harmonics, which change sign between them, shrink, the
        even ones, which do not, hold. Every cos(2πnθ/P) is flat at the ends, so the nearest
        encoding to such features lies too far from the alignment (on the CPU-hour model's
        independent images, the eight AA′-like twists within 3° of 60° read 0.8° short on average).
        An even harmonic is free of that hedge, and the highest turns fastest, so a feature error
        moves its reading least; within a quarter of its period of the end, where the first step
        has put the reading, its arccos has one branch. The CPU-hour twist model (six harmonics):
        own test series 0.160° → 0.130° (below 3° 0.53° → 0.21°), independent AA′-like images
        0.59° → 0.50° (docs/measurements.md); the odd fifth harmonic instead: 0.197°, AA′-like 0.67°.
        """
        f = np.asarray(features, np.float64)
        shape = f.shape[:-1]
        f = f.reshape(-1, self.dim)
        grid, table = self._table
        d2 = (table**2).sum(1)[None] - 2 * f @ table.T
        theta = grid[np.argmin(d2, axis=1)]
        m, P, reach = self.refine_harmonic, self.sym.twist_period_deg, self.refine_reach_deg
        fm = np.clip(f[:, m - 1], -1.0, 1.0)
        to_deg = P / (2 * np.pi * m)
        out, done = theta.copy(), np.zeros(len(theta), bool)
        for a in self.sym.aligned_twists_deg:  # 0° first: it keeps a reading within reach of both ends
            # At an aligned twist a (0 or P/2) the harmonic is ±cos(2πm(θ − a)/P); the range lies on one side.
            sign, inward = np.rint(np.cos(2 * np.pi * m * a / P)), (1.0 if a == 0 else -1.0)
            near = (np.abs(theta - a) <= reach) & ~done
            out = np.where(near, a + inward * np.arccos(sign * fm) * to_deg, out)
            done |= near
        return out.reshape(shape)

    def partner_deg(self, theta_deg) -> np.ndarray:
        """The twist of the other alignment, θ_max − θ (60° − θ for hexagonal MX2: AA-like and
        AA′-like moirés of one period), in degrees."""
        return self.sym.twist_partner_deg(theta_deg)

    def alignment_evidence(self, features: np.ndarray, theta_deg) -> np.ndarray:
        """How strongly features [..., dim] pick θ (degrees, [...]) over its partner θ_max − θ.

        Only the odd harmonics change sign under θ → θ_max − θ (the even ones and the moiré
        period do not), so they alone tell the two alignments apart: the projection of the
        features' odd harmonics on those encoded for θ, in units of the encoding's own (1: as
        trained, 0: no preference, < 0: the partner preferred). NaN within 2° of θ_max / 2, where
        the partner is the same twist to within 2°, so there is nothing to tell apart.
        """
        f = np.asarray(features, np.float64)
        e = self.encode(theta_deg).astype(np.float64)
        num = (f[..., 0::2] * e[..., 0::2]).sum(-1)
        den = (e[..., 0::2] ** 2).sum(-1)
        far = np.abs(self.partner_deg(theta_deg) - self.sym.fold_twist(theta_deg)) > 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(far & (den > 0), num / den, np.nan)

    @staticmethod
    def alignment_decided(evidence) -> np.ndarray:
        """Whether alignment evidence decides (≥ :data:`ALIGNMENT_EVIDENCE_MIN`); NaN (no partner
        to tell apart) counts as decided."""
        return ~(np.nan_to_num(np.asarray(evidence, np.float64), nan=np.inf) < ALIGNMENT_EVIDENCE_MIN)
