"""Atoms of a stacked bilayer/trilayer, rebuilt deterministically from one table row.

Geometry (docs/architecture.md, "Conventions"): layer 1 is the monolayer; layer k+1 is layer k copied, rotated by the twist
(layer 2 only), shifted in-plane by the slip D_k and raised by the interlayer distance. The whole
stack is then strained, rotated in-plane by ``rotation_deg`` and placed in the image frame
(x = col·p, y = row·p, Å) with its lattice origin at (``origin_x_A``, ``origin_y_A``). The beam
travels along +z and enters at the lowest z (layer 1), as in abTEM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from vdwstack.structures.materials import get_material, monolayer
from vdwstack.structures.symmetry import symmetry_for


@dataclass(frozen=True)
class StackGeometry:
    """Everything that fixes the atoms of one sample (lengths in Å, angles in degrees)."""

    material: str
    layers: int = 2
    Da_A: float = 0.0
    Db_A: float = 0.0
    Da2_A: float = 0.0
    Db2_A: float = 0.0
    theta_deg: float = 0.0
    rotation_deg: float = 0.0
    origin_x_A: float = 0.0
    origin_y_A: float = 0.0
    interlayer_A: float = float("nan")  # NaN: the material's default
    interlayer2_A: float = float("nan")
    strain_xx: float = 0.0
    strain_yy: float = 0.0
    strain_xy: float = 0.0
    vacancy_fraction: float = 0.0  # chalcogen vacancies
    metal_vacancy_fraction: float = 0.0
    displacement_rms_A: float = 0.0  # static disorder on top of the simulator's thermal blur
    seed: int = 0

    @classmethod
    def from_row(cls, row: Mapping) -> StackGeometry:
        """Build from a table row (dict or pandas Series); unknown columns are ignored."""
        kwargs = {}
        for name, f in cls.__dataclass_fields__.items():
            if name in row and row[name] is not None:
                value = row[name]
                if f.type in ("int",):
                    value = int(value)
                elif f.type in ("float",):
                    value = float(value)
                else:
                    value = str(value)
                kwargs[name] = value
        return cls(**kwargs)

    def validate(self) -> None:
        get_material(self.material)
        if self.layers not in (1, 2, 3):
            raise ValueError(f"layers must be 1, 2 or 3, got {self.layers}")
        for name in ("vacancy_fraction", "metal_vacancy_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if self.layers == 3 and self.theta_deg != 0.0:
            raise ValueError("twisted trilayers are not supported: theta_deg must be 0 for layers=3")


def slip_keys(layers: int) -> tuple[str, ...]:
    """A reading's slip fields (Å): ("Da_A", "Db_A") for a bilayer, and ("Da2_A", "Db2_A") after
    them for a trilayer (D2 = layer 3 − layer 2). Every stage names slips through this one list.

    Raises ValueError for another number of layers."""
    if layers == 2:
        return ("Da_A", "Db_A")
    if layers == 3:
        return ("Da_A", "Db_A", "Da2_A", "Db2_A")
    raise ValueError(f"layers must be 2 or 3 (a bilayer or a trilayer), not {layers!r}")


def _layer_transforms(geom: StackGeometry) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """For each layer: (2x2 linear map lattice→image, image offset (Å), z of the midplane (Å))."""
    mat = get_material(geom.material)
    sym = symmetry_for(geom.material)
    rot = np.deg2rad(geom.rotation_deg)
    c, s = np.cos(rot), np.sin(rot)
    R_global = np.array([[c, -s], [s, c]])
    eps = np.array([[geom.strain_xx, geom.strain_xy], [geom.strain_xy, geom.strain_yy]])
    F = R_global @ (np.eye(2) + eps)
    origin = np.array([geom.origin_x_A, geom.origin_y_A])
    gaps = [geom.interlayer_A, geom.interlayer2_A]
    gaps = [mat.interlayer_A if not np.isfinite(g) else g for g in gaps]
    slips = [sym.slip_to_cartesian(geom.Da_A, geom.Db_A), sym.slip_to_cartesian(geom.Da2_A, geom.Db2_A)]
    out = []
    shift = np.zeros(2)
    z = 0.0
    for k in range(geom.layers):
        twist = np.deg2rad(geom.theta_deg) if k == 1 else 0.0
        ct, st = np.cos(twist), np.sin(twist)
        Rt = np.array([[ct, -st], [st, ct]])
        if k >= 1:
            shift = shift + slips[k - 1]
            z += gaps[k - 1]
        out.append((F @ Rt, F @ shift + origin, z))
    return out


def build_stack(
    geom: StackGeometry,
    region_A: tuple[float, float, float, float],
) -> Atoms:
    """Atoms of the stack inside a rectangle of the image frame.

    Args:
        geom: the sample's geometry.
        region_A: (x_min, x_max, y_min, y_max) in Å, image frame.

    Returns:
        ase.Atoms with Cartesian positions in the image frame (z: layer 1 midplane at 0),
        ``tags`` = layer number (1, 2, 3), a cell spanning the region (pbc False).
    """
    geom.validate()
    x0, x1, y0, y1 = region_A
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty region {region_A}")
    mono = monolayer(geom.material)
    lat = mono.cell.array[:2, :2]
    basis_xy = mono.positions[:, :2]
    basis_z = mono.positions[:, 2]
    symbols = np.array(mono.get_chemical_symbols())
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])

    pos_all, sym_all, tag_all = [], [], []
    for k, (M, offset, z) in enumerate(_layer_transforms(geom), start=1):
        # Lattice→image: r = M (m a + n b + basis) + offset.  Fractional bounds from the corners.
        A = M @ lat.T  # columns: images of a and b
        frac = np.linalg.solve(A, (corners - offset).T).T
        lo = np.floor(frac.min(axis=0)).astype(int) - 2
        hi = np.ceil(frac.max(axis=0)).astype(int) + 2
        m, n = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        cells = np.column_stack([m.ravel(), n.ravel()]) @ lat  # (C, 2) lattice frame
        xy = (cells[:, None, :] + basis_xy[None]).reshape(-1, 2) @ M.T + offset
        inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
        zz = np.tile(basis_z, len(cells)) + z
        pos_all.append(np.column_stack([xy, zz])[inside])
        sym_all.append(np.tile(symbols, len(cells))[inside])
        tag_all.append(np.full(int(inside.sum()), k))

    positions = np.vstack(pos_all)
    symbols_out = np.concatenate(sym_all)
    tags = np.concatenate(tag_all)

    rng = np.random.default_rng(geom.seed)
    mat = get_material(geom.material)
    keep = np.ones(len(positions), bool)
    u = rng.random(len(positions))
    is_metal = symbols_out == mat.metal
    keep &= ~(is_metal & (u < geom.metal_vacancy_fraction))
    keep &= ~(~is_metal & (u < geom.vacancy_fraction))
    if geom.displacement_rms_A > 0:
        positions = positions + rng.normal(0.0, geom.displacement_rms_A, positions.shape)
    positions, symbols_out, tags = positions[keep], symbols_out[keep], tags[keep]

    atoms = Atoms(list(symbols_out), positions=positions, tags=tags)
    zmin = positions[:, 2].min() if len(positions) else 0.0
    zmax = positions[:, 2].max() if len(positions) else 0.0
    atoms.set_cell([x1 - x0, y1 - y0, zmax - zmin + 20.0])
    atoms.info["region_A"] = tuple(float(v) for v in region_A)
    return atoms


def reading_atoms(material: str, layers: int, reading: Mapping, size_A: float = 30.0, mirrored: bool = False) -> Atoms:
    """ASE Atoms of a reading (slips Da_A, Db_A[, Da2_A, Db2_A] and/or theta_deg, Å and degrees) over a
    size_A × size_A patch in the lattice frame; `mirrored`: the mirror image x → −x (moved back into
    the patch), the model of a reading made on the mirror image of a chiral lattice."""
    row = {"material": material, "layers": layers, "rotation_deg": 0.0,
           **{k: float(reading.get(k, 0.0)) for k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg")}}
    atoms = build_stack(StackGeometry.from_row(row), (0.0, size_A, 0.0, size_A))
    if mirrored:
        pos = atoms.positions.copy()
        pos[:, 0] = size_A - pos[:, 0]
        atoms.positions = pos
    atoms.info.update({k: float(v) for k, v in reading.items() if isinstance(v, (int, float))})
    atoms.info["mirrored"] = bool(mirrored)
    return atoms


def layer_heights_A(geom: StackGeometry) -> np.ndarray:
    """Midplane z of each layer (Å), layer 1 at 0; z grows along the beam."""
    return np.array([z for _, _, z in _layer_transforms(geom)])


def field_of_view_A(pixel_size_A: float, height_px: int, width_px: int) -> tuple[float, float, float, float]:
    """Image-frame rectangle (x_min, x_max, y_min, y_max) in Å covered by an image's pixels."""
    return (0.0, width_px * pixel_size_A, 0.0, height_px * pixel_size_A)
