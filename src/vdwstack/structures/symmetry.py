"""Stacking equivalences of each material: slip group, canonical slip, ΔD metric, twist folding.

Slip D = Da·â + Db·b̂ (Å) with â, b̂ the unit vectors along the monolayer lattice vectors a, b,
measured from AA stacking. Images cannot tell apart slips related by
- lattice translations  D ≡ D + m·a + n·b,
- layer relabelling     D ≡ −D,
- the in-plane rotations g of the projected monolayer (unknown image orientation): D ≡ g·D.
For 2H MX2 (3-fold) with ±D the group on D is C6; for ReX2 it is {+1, −1}.

A trilayer's slips D1 (layer 2 − layer 1) and D2 (layer 3 − layer 2) put its layers at 0, D1 and
D1 + D2. Its projection barely depends on the order of those three positions along the beam: only
the layers' depths (a per-layer defocus over ~12 Å, within the probe's depth of focus) tell the 6
orders apart, by about as much as moving one layer 0.1–0.2 Å (measured with the incoherent
simulator, ReS2 at 0.18 Å/px). ``TRILAYER_ORDERS`` lists the 6 orders as maps of (D1, D2); the
networks read the stacking up to them and the physics fit decides the order.

The canonical representative is the image of D in the Wigner–Seitz cell of the 2D lattice whose
Cartesian polar angle lies in [0°, 360°/n) with n the order of the group (6 or 2). Twist θ (degrees)
folds with θ ≡ −θ and θ ≡ θ + 360°/r (r = rotation order of the monolayer) into
[0°, 180°/r]: [0°, 60°] for 2H MX2 and [0°, 90°] for ReX2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vdwstack.structures.materials import Material, get_material

_EPS = 1e-9


def _trilayer_orders() -> np.ndarray:
    """(6, 2, 2) integer maps L, (D1', D2') = L (D1, D2): the slips of the same three in-plane
    positions (0, D1, D1 + D2) stacked in each order (a, b, c) along the beam. The first is the
    identity; (2, 1, 0), the reversed stack, is (D1, D2) → (−D2, −D1)."""
    P = np.array([[0, 0], [1, 0], [1, 1]])  # positions as combinations of (D1, D2)
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    return np.array([[P[b] - P[a], P[c] - P[b]] for a, b, c in orders])


TRILAYER_ORDERS = _trilayer_orders()


_NEIGHBOUR_SHIFTS = np.array([(m, n) for m in (-1, 0, 1) for n in (-1, 0, 1)], float)


def _rotation(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class StackingSymmetry:
    """Equivalences of slips and twists for one material (all lengths in Å, angles in degrees)."""

    material: Material

    @property
    def lattice(self) -> np.ndarray:
        """Rows a, b in Cartesian Å, shape (2, 2)."""
        return self.material.lattice_2d

    @property
    def group_order(self) -> int:
        """Order of the rotation group acting on D (C6 for 2H, C2 for ReX2)."""
        r = self.material.rotation_order
        return 2 * r if r % 2 else r  # ±D adds the 2-fold rotation to odd-order groups

    @property
    def rotations(self) -> np.ndarray:
        """The group's rotation matrices acting on Cartesian D, shape (n, 2, 2)."""
        n = self.group_order
        return np.stack([_rotation(2 * np.pi * k / n) for k in range(n)])

    @property
    def twist_period_deg(self) -> float:
        return 360.0 / self.material.rotation_order

    @property
    def twist_range_deg(self) -> tuple[float, float]:
        return (0.0, self.twist_period_deg / 2)

    # --- conversions ---------------------------------------------------------------------------
    def slip_to_cartesian(self, da_A, db_A) -> np.ndarray:
        """(Da, Db) along â, b̂ (Å) → Cartesian (x, y) in Å; broadcasts, last axis = 2."""
        u = self.material.unit_vectors
        da_A, db_A = np.asarray(da_A, float), np.asarray(db_A, float)
        return da_A[..., None] * u[0] + db_A[..., None] * u[1]

    def cartesian_to_slip(self, xy_A) -> tuple[np.ndarray, np.ndarray]:
        """Cartesian (x, y) in Å → (Da, Db) along â, b̂ in Å."""
        u = self.material.unit_vectors
        coef = np.linalg.solve(u.T, np.asarray(xy_A, float).reshape(-1, 2).T).T
        shape = np.shape(xy_A)[:-1]
        return coef[:, 0].reshape(shape), coef[:, 1].reshape(shape)

    # --- lattice reduction ---------------------------------------------------------------------
    def wigner_seitz(self, xy_A) -> np.ndarray:
        """Shortest lattice-equivalent of Cartesian vectors (Å), shape (..., 2)."""
        xy = np.asarray(xy_A, float)
        flat = xy.reshape(-1, 2)
        out = np.empty_like(flat)
        # Chunks keep the (n, 9, 2) candidates small: fresh large temporaries cost a page fault per
        # 4 kB, which dominated building the million-point slip tables (5.4 → 0.6 s per table).
        for i in range(0, len(flat), 8192):
            out[i:i + 8192] = self._wigner_seitz_flat(flat[i:i + 8192])
        return out.reshape(xy.shape)

    def _wigner_seitz_flat(self, xy: np.ndarray) -> np.ndarray:
        lat = self.lattice
        frac = np.linalg.solve(lat.T, xy.T).T
        base = frac - np.round(frac)
        # Search neighbouring translations: rounding alone is not enough for oblique cells.
        cand = ((base[:, None, :] + _NEIGHBOUR_SHIFTS[None]).reshape(-1, 2) @ lat).reshape(-1, 9, 2)
        best = np.argmin(np.einsum("nkc,nkc->nk", cand, cand), axis=1)
        return cand[np.arange(len(cand)), best]

    # --- canonical slip and metric -------------------------------------------------------------
    def canonical_cartesian(self, xy_A) -> np.ndarray:
        """Canonical representative of Cartesian slips (Å), shape (..., 2)."""
        xy = self.wigner_seitz(xy_A).reshape(-1, 2)
        sector = 2 * np.pi / self.group_order
        ang = np.arctan2(xy[:, 1], xy[:, 0]) % (2 * np.pi)
        # Rotate clockwise by whole sectors into [0, sector); small tolerance keeps edges stable.
        k = np.floor((ang + 1e-9) / sector)
        c, s = np.cos(k * sector), np.sin(k * sector)  # rotation by −k·sector, all points at once
        out = np.stack([c * xy[:, 0] + s * xy[:, 1], -s * xy[:, 0] + c * xy[:, 1]], axis=-1)
        return self.wigner_seitz(out).reshape(np.shape(xy_A))

    def canonical_slip(self, da_A, db_A) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (Da, Db) in Å of slips given as (Da, Db) in Å."""
        return self.cartesian_to_slip(self.canonical_cartesian(self.slip_to_cartesian(da_A, db_A)))

    def slip_error_A(self, pred_da_A, pred_db_A, true_da_A, true_db_A) -> np.ndarray:
        """ΔD (Å): min over the group and lattice translations of |g·D_pred − D_true|."""
        arrays = np.broadcast_arrays(*(np.asarray(v, float) for v in (pred_da_A, pred_db_A, true_da_A, true_db_A)))
        shape = arrays[0].shape
        p = self.slip_to_cartesian(arrays[0], arrays[1]).reshape(-1, 2)
        t = self.slip_to_cartesian(arrays[2], arrays[3]).reshape(-1, 2)
        best = np.full(len(p), np.inf)
        for g in self.rotations:
            diff = self.wigner_seitz(p @ g.T - t)
            best = np.minimum(best, np.linalg.norm(diff, axis=-1))
        return best.reshape(shape)

    def trilayer_slip_error_A(self, pred, true, any_order: bool = False) -> np.ndarray:
        """ΔD (Å) of trilayers: the larger of the two slips' errors, minimised over the pair's
        equivalences: one rotation g of the group turns both slips (the stack turns as a whole),
        lattice translations act on each, and the reversed stack (D1, D2) ≡ (−D2, −D1) (the stack
        seen from its other side; the hand is reported on its own). `any_order`: also over all 6
        orders of the layers along the beam (``TRILAYER_ORDERS``), which the networks do not tell
        apart. pred, true: (Da, Db, Da2, Db2) in Å, arrays broadcast together."""
        arrays = np.broadcast_arrays(*(np.asarray(v, float) for v in (*pred, *true)))
        shape = arrays[0].shape
        p1, p2, t1, t2 = (self.slip_to_cartesian(arrays[i], arrays[i + 1]).reshape(-1, 2) for i in (0, 2, 4, 6))
        best = np.full(len(p1), np.inf)
        maps = TRILAYER_ORDERS if any_order else TRILAYER_ORDERS[[0, 5]]
        for L in maps:
            q1, q2 = L[0, 0] * p1 + L[0, 1] * p2, L[1, 0] * p1 + L[1, 1] * p2
            for g in self.rotations:
                e1 = np.linalg.norm(self.wigner_seitz(q1 @ g.T - t1), axis=-1)
                e2 = np.linalg.norm(self.wigner_seitz(q2 @ g.T - t2), axis=-1)
                best = np.minimum(best, np.maximum(e1, e2))
        return best.reshape(shape)

    def is_canonical(self, da_A, db_A, tol_A: float = 1e-6) -> np.ndarray:
        cda, cdb = self.canonical_slip(da_A, db_A)
        return (np.abs(cda - da_A) < tol_A) & (np.abs(cdb - db_A) < tol_A)

    def slip_grid(self, step_A: float) -> tuple[np.ndarray, np.ndarray]:
        """Grid (Da, Db) = (i·step, j·step) Å covering the symmetry-reduced slip cell.

        Returns only the grid points whose canonical representative is themselves, so each
        distinct stacking appears once. Raises ValueError for step ≤ 0 or a step so large that
        the grid is empty.
        """
        if not np.isfinite(step_A) or step_A <= 0:
            raise ValueError(f"slip step must be > 0 Å, got {step_A!r}")
        reach = max(self.material.a_A, self.material.b_A) * 1.2
        n = int(np.ceil(reach / step_A))
        i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
        da, db = (i.ravel() * step_A, j.ravel() * step_A)
        keep = self.is_canonical(da, db, tol_A=1e-7 + 1e-9 * step_A)
        da, db = da[keep], db[keep]
        order = np.lexsort((db, da))
        return da[order], db[order]

    # --- twist -----------------------------------------------------------------------------------
    def fold_twist(self, theta_deg) -> np.ndarray:
        """Fold twists (degrees) into [0, 180/r] using θ ≡ −θ and θ ≡ θ + 360/r."""
        p = self.twist_period_deg
        t = np.mod(np.asarray(theta_deg, float), p)
        return np.where(t > p / 2, p - t, t)

    @property
    def aligned_twists_deg(self) -> tuple[float, ...]:
        """Folded twists (degrees) at which the two layers' lattices coincide: 0° (AA-like) and, for
        hexagonal MX2 (a three-fold crystal on a six-fold lattice), 60° (AA′-like: the partner of θ
        is 60° − θ). ReX2's lattice is only two-fold: 90° turns it onto another lattice."""
        return (0.0, self.twist_range_deg[1]) if self.material.is_hexagonal else (0.0,)

    def twist_partner_deg(self, theta_deg) -> np.ndarray:
        """The twist of the other alignment, θ_max − θ (degrees, of the folded θ; 60° − θ for
        hexagonal MX2: AA-like and AA′-like moirés of one period)."""
        return self.twist_range_deg[1] - self.fold_twist(theta_deg)

    def near_aligned_twist(self, theta_deg, within_deg: float = 3.0) -> np.ndarray:
        """Whether each twist (degrees, folded) lies within `within_deg` of an aligned stacking
        (:attr:`aligned_twists_deg`). There a field of a few nm holds less than a moiré period, and θ
        and its partner θ_max − θ differ only in the local stackings' contrast."""
        t = self.fold_twist(theta_deg)
        return np.min([np.abs(t - a) for a in self.aligned_twists_deg], axis=0) < within_deg

    def twist_error_deg(self, pred_deg, true_deg) -> np.ndarray:
        """Periodic angular distance (degrees) between twists, respecting θ ≡ −θ, θ + 360/r."""
        return np.abs(self.fold_twist(pred_deg) - self.fold_twist(true_deg))

    def errors_vs_truth(self, readings: Mapping, truth: Mapping) -> dict[str, float]:
        """Errors of readings {"slip": {Da_A, Db_A}, "twist": {theta_deg}} (either may be absent)
        against a known truth: {"dD_A" (Å), "dtheta_deg" (degrees)} for what both hold."""
        err = {}
        if readings.get("slip") and "Da_A" in truth:
            r = readings["slip"]
            err["dD_A"] = float(self.slip_error_A(r["Da_A"], r["Db_A"], truth["Da_A"], truth.get("Db_A", 0.0)))
        if readings.get("twist") and "theta_deg" in truth:
            err["dtheta_deg"] = float(self.twist_error_deg(readings["twist"]["theta_deg"], truth["theta_deg"]))
        return err


@lru_cache(maxsize=None)
def projection_mirror(material: str, tol_A: float = 0.05) -> np.ndarray | None:
    """A mirror line of the monolayer's projection along z, as a Cartesian 2×2 matrix (in the frame
    of ``lattice_2d``), or None when it has none (ReX2: its mirror image is a different lattice,
    which an image taken of the specimen upside down, or a transposed or flipped scan, shows).

    A mirrored image of a stack of such layers with slip D (Cartesian) is then an image of the same
    material with slip M·D in a turned frame (for a twist: −θ). Tested on the projected cell: the
    mirror x → −x, followed by each 60°·k rotation that maps the lattice onto itself within
    `tol_A`, must map every projected atom onto one of the same element (modulo the lattice) after
    one common translation; the first that does is returned.
    """
    from vdwstack.structures.materials import monolayer

    atoms = monolayer(material)
    lat = get_material(material).lattice_2d
    xy, sym = atoms.positions[:, :2], np.array(atoms.get_chemical_symbols())
    inv = np.linalg.inv(lat)

    def mod_lattice(d: np.ndarray) -> np.ndarray:  # shortest lattice-equivalent vectors, (..., 2)
        f = d @ inv
        return (f - np.round(f)) @ lat

    M = np.diag([-1.0, 1.0])
    for k in range(6):
        g = _rotation(np.pi * k / 3) @ M
        if np.any(np.linalg.norm(mod_lattice(lat @ g.T), axis=1) > tol_A):
            continue  # g does not map the lattice onto itself
        moved = xy @ g.T
        for j in np.nonzero(sym == sym[0])[0]:
            t = xy[j] - moved[0]
            d = np.linalg.norm(mod_lattice((moved + t)[:, None] - xy[None]), axis=-1)
            if np.all(np.min(np.where(sym[:, None] == sym[None], d, np.inf), axis=1) < tol_A):
                return g
    return None


def projection_is_chiral(material: str) -> bool:
    """True when the monolayer's projection has no mirror line (ReX2), False when its mirror image
    equals a rotated, translated copy (2H MX2); see :func:`projection_mirror`."""
    return projection_mirror(material) is None


@lru_cache(maxsize=None)
def symmetry_for(material: str) -> StackingSymmetry:
    """The stacking symmetry of a material by name (ValueError for unknown materials)."""
    return StackingSymmetry(get_material(material))
