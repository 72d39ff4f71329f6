"""What the check varies and what it finds: the stacking (slips, twist), the pose of the model in
the crop, one evaluated match; symmetry-aware reporting and distances of stackings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from vdwstack.structures.symmetry import TRILAYER_ORDERS, symmetry_for


@dataclass(frozen=True)
class Stacking:
    """A stacking to simulate: slips (Å, lattice frame) and twist (degrees).

    For twists Da_A, Db_A are the layers' relative translation (a nuisance that moves the moiré).
    """

    Da_A: float = 0.0
    Db_A: float = 0.0
    Da2_A: float = 0.0
    Db2_A: float = 0.0
    theta_deg: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Pose:
    """How the model sits in the crop: rotation (degrees), scale (true / nominal pixel size), optics,
    and the scan's distortion (drift, shear): a traceless strain of the model, (ε_xx − ε_yy)/2 =
    strain_aniso and ε_xy = strain_shear in the frame of layer 1 (dimensionless); two-fold
    astigmatism as Cartesian components astig_x_A, astig_y_A (Å; see :attr:`astigmatism`)."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    defocus_A: float = 35.0
    source_fwhm_A: float = 0.7
    strain_aniso: float = 0.0
    strain_shear: float = 0.0
    astig_x_A: float = 0.0
    astig_y_A: float = 0.0

    @property
    def strain(self) -> tuple[float, float]:
        return (self.strain_aniso, self.strain_shear)

    @property
    def astigmatism(self) -> tuple[float, float]:
        """Two-fold astigmatism as (C12 in Å, φ12 in degrees; abTEM's convention) from its Cartesian
        components (C12·cos 2φ12, C12·sin 2φ12), which the fit varies (smooth through C12 = 0)."""
        return float(np.hypot(self.astig_x_A, self.astig_y_A)), float(np.degrees(np.arctan2(self.astig_y_A,
                                                                                              self.astig_x_A)) / 2)


@dataclass
class Match:
    """One evaluated model: agreement and what the fit found.

    agreement: Pearson r of the band-passed crop and simulation.
    translation_px: (row, col) of the crop's corner in the simulation canvas (sub-pixel).
    window: band-passed simulation under the crop (for figures); None until requested.
    """

    agreement: float
    stacking: Stacking
    pose: Pose
    translation_px: tuple[float, float]
    window: np.ndarray | None = None



def canonical_stacking(material: str, s: Stacking, twist: bool) -> Stacking:
    """Report slips as the canonical representative and twists folded into the material's range."""
    sym = symmetry_for(material)
    if twist:
        return replace(s, theta_deg=float(sym.fold_twist(s.theta_deg)))
    da, db = sym.canonical_slip(s.Da_A, s.Db_A)
    d1 = sym.slip_to_cartesian(s.Da_A, s.Db_A)
    d2 = sym.slip_to_cartesian(s.Da2_A, s.Db2_A)
    # The rotation g that makes D1 canonical turns the whole stack: D2 turns with it.
    target = sym.slip_to_cartesian(da, db)
    g = min(sym.rotations, key=lambda R: float(np.linalg.norm(sym.wigner_seitz(R @ d1) - target)))
    da2, db2 = sym.cartesian_to_slip(sym.wigner_seitz(g @ d2))
    return replace(s, Da_A=float(da), Db_A=float(db), Da2_A=float(da2), Db2_A=float(db2))


def stacking_change(material: str, a: Stacking, b: Stacking, twist: bool, layers: int = 2) -> float:
    """ΔD (Å; the larger of the two slips for trilayers) or Δθ (degrees) between two readings."""
    sym = symmetry_for(material)
    if twist:
        return float(sym.twist_error_deg(a.theta_deg, b.theta_deg))
    d = float(sym.slip_error_A(a.Da_A, a.Db_A, b.Da_A, b.Db_A))
    if layers == 3:
        d = max(d, float(sym.slip_error_A(a.Da2_A, a.Db2_A, b.Da2_A, b.Db2_A)))
    return d


def layer_orderings(s: Stacking, layers: int) -> list[Stacking]:
    """The stackings whose layers sit at the same in-plane positions in another order along the
    beam: their projections are alike (only the layers' depths, through the per-layer defocus,
    tell them apart). Bilayers: D and −D; trilayers: all 6 orders of the positions 0, D1, D1 + D2
    (the reversed order is the relabelling (D1, D2) ≡ (−D2, −D1)). The first is `s` itself."""
    if layers == 2:
        return [s, replace(s, Da_A=-s.Da_A, Db_A=-s.Db_A)]
    pair = np.array([[s.Da_A, s.Db_A], [s.Da2_A, s.Db2_A]])  # (Da, Db) are linear in D: maps apply as is
    out = [s]
    for L in TRILAYER_ORDERS[1:]:
        (a1, b1), (a2, b2) = L @ pair
        out.append(replace(s, Da_A=float(a1), Db_A=float(b1), Da2_A=float(a2), Db2_A=float(b2)))
    return out


def symmetry_orbit(material: str, s: Stacking) -> list[Stacking]:
    """The readings equivalent to `s` under the material's rotations g (D → g·D, both slips of a
    trilayer turned together): one image, seen in a pose turned by g. With the pose fixed only one
    of them fits, so a reading from elsewhere (a network) is tried in all of them."""
    sym = symmetry_for(material)
    d1, d2 = sym.slip_to_cartesian(s.Da_A, s.Db_A), sym.slip_to_cartesian(s.Da2_A, s.Db2_A)
    out = []
    for g in sym.rotations:
        (a1, b1), (a2, b2) = sym.cartesian_to_slip(g @ d1), sym.cartesian_to_slip(g @ d2)
        out.append(replace(s, Da_A=float(a1), Db_A=float(b1), Da2_A=float(a2), Db2_A=float(b2)))
    return out


# --- global search for an alternative reading -------------------------------------------------------
def lattice_to_image(pose: Pose, theta_deg: float = 0.0) -> np.ndarray:
    """The geometry's map of a slip (Cartesian, lattice frame, Å) to layer 2's image shift (Å)."""
    t = np.deg2rad(pose.rotation_deg - theta_deg / 2)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    a, sh = pose.strain
    return R @ (np.eye(2) / pose.scale + np.array([[a, sh], [sh, -a]]))
