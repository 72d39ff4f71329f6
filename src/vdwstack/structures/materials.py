"""Monolayer unit cells of the supported transition-metal dichalcogenides, read from data files.

The data live in the top-level folder ``resources/`` of the repository, which pyproject.toml
installs as the package ``vdwstack.resources`` (editable and wheel installs alike; a source tree
used without installation falls back to the folder itself). See ``resources/README.md``.

- ``resources/cells/<name>_monolayer.cif``: every atom of the monolayer cell (P 1, no symmetry
  operations), Cartesian positions in Å written to full double precision. Its cell parameters
  a, b, γ are the material's in-plane lattice; its comments say where the cell comes from.
- ``resources/materials.tsv``: one row per material: metal, chalcogen, interlayer distance,
  thermal RMS displacement per element, point group and in-plane rotation order.

A new material is one CIF and one table row.

Every cell follows one frame (docs/architecture.md, "Conventions"): lattice vector a along +x, b in the xy plane at the
angle γ counter-clockwise from a, the layer midplane at z = 0. Lengths in Å.

ASE parses the CIF (``ase.io.cif.parse_cif``: tags, cell parameters, element symbols). The step
from the parsed block to atoms is done here rather than by ``ase.io.read``: that expands the
space group through ``ase.spacegroup.crystal``, which converts the positions to fractional
coordinates, wraps them into [0, 1) — the lower chalcogens at z < 0 would move to z ≈ c, atoms
left of the origin to the far side of the cell — and back, so the midplane would leave z = 0 and
the positions would not come back bit-for-bit. Here the listed atoms are taken as written
(``_atom_site_Cartn_x/y/z``), after checking that the file declares no symmetry beyond P 1 and
α = β = 90°. The cell is rebuilt from a, b, γ exactly as written in the CIF (c = 20 Å of vacuum,
pbc T T F), the atoms are ordered metals first, then chalcogens from bottom to top, and the table
is read with the ``csv`` module.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms
from ase.io.cif import parse_cif

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CELL_C_A = 20.0  # out-of-plane cell length (vacuum; the layer is not periodic along z)
_TABLE_COLUMNS = ("name", "metal", "chalcogen", "interlayer_A", "thermal_rms_metal_A",
                  "thermal_rms_chalcogen_A", "point_group", "rotation_order")


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


def _resources() -> Traversable:
    """The data folder: the installed package ``vdwstack.resources``, else ``<repo>/resources``."""
    try:
        return files("vdwstack.resources")
    except ModuleNotFoundError:  # a source tree on sys.path, not installed
        return Path(__file__).resolve().parents[3] / "resources"


def _cif_path(name: str) -> Traversable:
    return _resources() / "cells" / f"{name}_monolayer.cif"


def _read_cell(name: str) -> tuple[tuple[float, float, float], list[str], np.ndarray]:
    """((a, b, γ) as written in the CIF, element symbols, Cartesian positions (n, 3) in Å)."""
    path = _cif_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"materials.tsv lists {name!r} but there is no cells/{path.name}")
    where = f"cells/{path.name}"
    blocks = list(parse_cif(io.BytesIO(path.read_bytes())))
    if len(blocks) != 1:
        raise ValueError(f"{where}: expected one data block, found {len(blocks)}")
    block = blocks[0]
    cellpar = block.get_cellpar()
    if cellpar is None:
        raise ValueError(f"{where}: no _cell_length_* / _cell_angle_* tags")
    a, b, _c, alpha, beta, gamma = (float(v) for v in cellpar)
    if alpha != 90.0 or beta != 90.0:
        raise ValueError(f"{where}: α and β must be 90° (c normal to the layer), got {alpha}, {beta}")
    # The atoms are taken as listed, so the file must not rely on symmetry to generate more.
    for tag in ("_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m"):
        if tag in block and str(block[tag]).replace(" ", "") != "P1":
            raise ValueError(f"{where}: list every atom in P 1, not in {block[tag]!r}")
    for tag in ("_space_group_it_number", "_symmetry_int_tables_number"):
        if tag in block and int(block[tag]) != 1:
            raise ValueError(f"{where}: list every atom in P 1 (space group number 1), not {block[tag]}")
    for tag in ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz"):
        ops = block.get(tag)
        ops = [ops] if isinstance(ops, str) else (ops or [])
        if any(str(op).replace(" ", "").lower() != "x,y,z" for op in ops):
            raise ValueError(f"{where}: list every atom in P 1; found symmetry operations {ops}")
    coords = [block.get(f"_atom_site_cartn_{k}") for k in "xyz"]
    if any(c is None for c in coords):
        raise ValueError(f"{where}: give _atom_site_Cartn_x/y/z (Å, frame a ∥ x, midplane at "
                         "z = 0); fractional coordinates are not read")
    positions = np.array(coords, dtype=float).T
    symbols = block.get_symbols()
    if len(symbols) != len(positions):
        raise ValueError(f"{where}: {len(symbols)} symbols but {len(positions)} positions")
    return (a, b, gamma), symbols, positions


def _read_table() -> list[dict[str, str]]:
    text = (_resources() / "materials.tsv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    missing = [c for c in _TABLE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"materials.tsv: missing columns {missing}")
    return list(reader)


def _load() -> tuple[dict[str, Material], dict[str, tuple[list[str], np.ndarray]]]:
    materials: dict[str, Material] = {}
    cells: dict[str, tuple[list[str], np.ndarray]] = {}
    for row in _read_table():
        name, metal, chalcogen = row["name"], row["metal"], row["chalcogen"]
        if name in materials:
            raise ValueError(f"materials.tsv: {name!r} is listed twice")
        (a, b, gamma), symbols, positions = _read_cell(name)
        if set(symbols) != {metal, chalcogen}:
            raise ValueError(f"cells/{name}_monolayer.cif holds {sorted(set(symbols))}, but "
                             f"materials.tsv says metal {metal!r}, chalcogen {chalcogen!r}")
        materials[name] = Material(
            name, a, b, gamma, float(row["interlayer_A"]),
            {metal: float(row["thermal_rms_metal_A"]), chalcogen: float(row["thermal_rms_chalcogen_A"])},
            int(row["rotation_order"]), metal, chalcogen,
        )
        cells[name] = (symbols, positions)
    return materials, cells


MATERIALS: dict[str, Material]
MATERIALS, _CELLS = _load()


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
    symbols, positions = _CELLS[name]
    cell = np.zeros((3, 3))
    cell[:2, :2] = mat.lattice_2d
    cell[2, 2] = CELL_C_A
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=(True, True, False))
    # Metals first, then chalcogens from bottom to top, as in the reference files.
    is_metal = np.array([s == mat.metal for s in atoms.get_chemical_symbols()])
    order = np.lexsort((atoms.positions[:, 2], ~is_metal))
    return atoms[order]


def monolayer(name: str) -> Atoms:
    """A fresh copy of the primitive monolayer cell (midplane at z = 0, pbc = T T F)."""
    return _monolayer_cached(name).copy()
