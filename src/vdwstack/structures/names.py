"""Names of high-symmetry stackings (AA, AB/BA, SP for 2H MX2; AA for ReX2) and naming of slips."""

from __future__ import annotations

import numpy as np

from vdwstack.structures.materials import get_material
from vdwstack.structures.symmetry import symmetry_for


def stacking_names(material: str) -> dict[str, tuple[float, float]]:
    """High-symmetry stackings of the material: name → (Da, Db) in Å."""
    mat = get_material(material)
    a = mat.a_A
    if mat.is_hexagonal:
        sym = symmetry_for(material)
        ab = sym.cartesian_to_slip(np.array([0.0, a / np.sqrt(3)]))
        sp = sym.cartesian_to_slip(np.array([a / 2, 0.0]))
        return {"AA": (0.0, 0.0), "AB/BA": (float(ab[0]), float(ab[1])), "SP": (float(sp[0]), float(sp[1]))}
    return {"AA": (0.0, 0.0)}


def name_stacking(material: str, da_A: float, db_A: float, tol_A: float = 0.2) -> str:
    """The nearest high-symmetry stacking within tol_A (ΔD), else 'other'."""
    sym = symmetry_for(material)
    best, name = np.inf, "other"
    for n, (a, b) in stacking_names(material).items():
        d = float(sym.slip_error_A(da_A, db_A, a, b))
        if d < best:
            best, name = d, n
    return name if best <= tol_A else "other"
