"""What the check varies and what it finds: the stacking (slips, twist), the pose of the model in
the crop, one evaluated match; symmetry-aware reporting and distances of stackings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from vdwstack.structures.symmetry import symmetry_for


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
    """How the model sits in the crop: rotation (degrees), scale (true / nominal pixel size), optics."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    defocus_A: float = 35.0
    source_fwhm_A: float = 0.7


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
    da2, db2 = sym.cartesian_to_slip(sym.wigner_seitz(sym.slip_to_cartesian(s.Da2_A, s.Db2_A)))
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


# --- global search for an alternative reading -------------------------------------------------------
def lattice_to_image(pose: Pose, theta_deg: float = 0.0) -> np.ndarray:
    """The geometry's map of a slip (Cartesian, lattice frame, Å) to layer 2's image shift (Å)."""
    t = np.deg2rad(pose.rotation_deg - theta_deg / 2)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / pose.scale
