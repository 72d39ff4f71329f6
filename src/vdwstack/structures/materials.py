"""Monolayer unit cells of the supported transition-metal dichalcogenides.

Every cell follows one frame (see DESIGN.md): lattice vector a along +x, b in the xy plane at the
angle γ counter-clockwise from a, the layer midplane at z = 0. Lengths in Å.

- MoS2, WS2: 2H monolayers from ``ase.build.mx2`` (metal at the origin, chalcogens at fractional
  (2/3, 1/3) above and below).
- ReS2, ReSe2: distorted 1T'' (space group P-1, inversion centre at the origin). The asymmetric
  unit below (two Re and four chalcogen sites; the other six atoms are their inversion partners)
  is the DFT-relaxed cell distributed with the authors' code of Huang et al. 2025 (TED-Gen,
  Apache-2.0), ~1 % larger than bulk X-ray values (ReS2: a = 6.352, b = 6.446 Å, γ = 118.97°).
  a is the shortest in-plane period and runs along the Re4-cluster chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.build import mx2


@dataclass(frozen=True)
class Material:
    """Facts about one monolayer material.

    Attributes:
        name: formula as users write it (``"ReS2"``).
        a_A, b_A: in-plane lattice constants (Å).
        gamma_deg: angle between a and b (degrees).
        interlayer_A: midplane-to-midplane distance of neighbouring layers (Å).
        thermal_rms_A: one-dimensional RMS thermal displacement per element (Å).
        rotation_order: order n of the in-plane rotations of the projected monolayer
            (3 for 2H MX2, 2 for 1T'' ReX2: inversion projects to a 2-fold rotation).
    """

    name: str
    a_A: float
    b_A: float
    gamma_deg: float
    interlayer_A: float
    thermal_rms_A: dict[str, float] = field(default_factory=dict)
    rotation_order: int = 1
    metal: str = ""
    chalcogen: str = ""

    @property
    def lattice_2d(self) -> np.ndarray:
        """Rows are the in-plane lattice vectors a and b (Å), shape (2, 2)."""
        g = np.deg2rad(self.gamma_deg)
        return np.array([[self.a_A, 0.0], [self.b_A * np.cos(g), self.b_A * np.sin(g)]])

    @property
    def unit_vectors(self) -> np.ndarray:
        """Rows are the unit vectors â and b̂ along which slips (Da, Db) are measured."""
        lat = self.lattice_2d
        return lat / np.linalg.norm(lat, axis=1, keepdims=True)

    @property
    def is_hexagonal(self) -> bool:
        return self.rotation_order == 3


# Asymmetric units of the ReX2 cells: (symbol, frac_a, frac_b, z_A from the midplane).
_REX2_ASYM = {
    "ReS2": [
        ("Re", 0.561196, 0.312199, -0.054358),
        ("Re", 0.988263, 0.286017, -0.014078),
        ("S", 0.854519, 0.440862, -1.749606),
        ("S", 0.316807, 0.396228, -1.570032),
        ("S", 0.353817, 0.933881, -1.353005),
        ("S", 0.816525, 0.903969, -1.184128),
    ],
    "ReSe2": [
        ("Re", 0.567576, 0.318058, -0.062910),
        ("Re", 0.987919, 0.291557, -0.022095),
        ("Se", 0.856226, 0.443469, -1.897939),
        ("Se", 0.315231, 0.393283, -1.680854),
        ("Se", 0.355753, 0.936533, -1.432567),
        ("Se", 0.815865, 0.903267, -1.254036),
    ],
}

MATERIALS: dict[str, Material] = {
    "MoS2": Material("MoS2", 3.18, 3.18, 120.0, 6.15, {"Mo": 0.05, "S": 0.07}, 3, "Mo", "S"),
    "WS2": Material("WS2", 3.153, 3.153, 120.0, 6.18, {"W": 0.045, "S": 0.07}, 3, "W", "S"),
    "ReS2": Material("ReS2", 6.41910, 6.52306, 118.837, 6.15, {"Re": 0.045, "S": 0.07}, 2, "Re", "S"),
    "ReSe2": Material(
        "ReSe2", 6.66991, 6.79281, 118.813, 6.45, {"Re": 0.045, "Se": 0.06}, 2, "Re", "Se"
    ),
}
# MX2 chalcogen-chalcogen thickness (Å) for ase.build.mx2.
_MX2_THICKNESS_A = {"MoS2": 3.19, "WS2": 3.14}


def get_material(name: str) -> Material:
    """Look a material up by name; the error lists the supported ones."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise ValueError(
            f"unknown material {name!r}; supported materials: {', '.join(sorted(MATERIALS))}"
        ) from None


@lru_cache(maxsize=None)
def _monolayer_cached(name: str) -> Atoms:
    mat = get_material(name)
    if name in _MX2_THICKNESS_A:
        atoms = mx2(formula=name, kind="2H", a=mat.a_A, thickness=_MX2_THICKNESS_A[name], vacuum=0)
        atoms.positions[:, 2] -= atoms.positions[0, 2]  # metal plane = midplane
    else:
        rows = _REX2_ASYM[name]
        symbols = [r[0] for r in rows]
        frac = np.array([[r[1], r[2]] for r in rows])
        z = np.array([r[3] for r in rows])
        # Inversion partners: (f, z) -> (1 - f, -z) (P-1 with the centre at the origin).
        symbols = symbols + symbols
        frac = np.vstack([frac, (1.0 - frac) % 1.0])
        z = np.concatenate([z, -z])
        xy = frac @ mat.lattice_2d
        atoms = Atoms(symbols, positions=np.column_stack([xy, z]))
    cell = np.zeros((3, 3))
    cell[:2, :2] = mat.lattice_2d
    cell[2, 2] = 20.0
    atoms.set_cell(cell)
    atoms.pbc = (True, True, False)
    # Metals first, then chalcogens from bottom to top, as in the reference files.
    is_metal = np.array([s == mat.metal for s in atoms.get_chemical_symbols()])
    order = np.lexsort((atoms.positions[:, 2], ~is_metal))
    return atoms[order]


def monolayer(name: str) -> Atoms:
    """A fresh copy of the primitive monolayer cell (midplane at z = 0, pbc = T T F)."""
    return _monolayer_cached(name).copy()
