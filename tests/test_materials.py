import csv
import hashlib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from ase.build import mx2
from ase.io import read

from vdwstack.structures.materials import MATERIALS, get_material, monolayer

ROOT = Path(__file__).resolve().parents[1]
# The materials of the reference structures in ../shared/data/structures (MoSe2, WSe2 have none).
REFERENCE_MATERIALS = ["MoS2", "ReS2", "ReSe2", "WS2"]


@pytest.mark.parametrize("name", REFERENCE_MATERIALS)
def test_cell_matches_reference(name, shared_structures):
    ref = read(shared_structures / f"{name}_monolayer.extxyz")
    ours = monolayer(name)
    np.testing.assert_allclose(ours.cell.cellpar()[[0, 1, 5]], ref.cell.cellpar()[[0, 1, 5]], atol=1e-3)
    assert ours.get_chemical_formula() == ref.get_chemical_formula()
    # Every reference atom has a partner of the same element within 1e-3 Å (modulo the lattice).
    ref_pos = ref.positions - [0, 0, ref.cell[2, 2] / 2]
    lat = ours.cell.array[:2, :2]
    for sym, p in zip(ref.get_chemical_symbols(), ref_pos):
        cands = ours.positions[np.array(ours.get_chemical_symbols()) == sym]
        d = cands - p
        frac = np.linalg.solve(lat.T, d[:, :2].T).T
        d[:, :2] = (frac - np.round(frac)) @ lat
        assert np.linalg.norm(d, axis=1).min() < 1e-3, (name, sym, p)


@pytest.mark.parametrize("name", ["ReS2", "ReSe2"])
def test_rex2_chains_run_along_a(name):
    """Re–Re bonds (< 3.1 Å) join the Re4 clusters into straight chains parallel to a."""
    from scipy.sparse.csgraph import connected_components

    atoms = monolayer(name).repeat((6, 6, 1))
    re = atoms.positions[np.array(atoms.get_chemical_symbols()) == "Re", :2]
    dist = np.linalg.norm(re[:, None] - re[None], axis=-1)
    n, labels = connected_components(dist < 3.1)
    a, b = monolayer(name).cell.array[0, :2], monolayer(name).cell.array[1, :2]

    def partner_label(points, shift):
        d = np.linalg.norm(re[None] - (points + shift)[:, None], axis=-1)
        found = d.min(axis=1) < 1e-6
        return labels[d.argmin(axis=1)][found]

    chains = [k for k in range(n) if np.sum(labels == k) >= 12]
    assert len(chains) >= 3
    for k in chains:
        pts = re[labels == k]
        assert np.all(partner_label(pts, a) == k)  # translating by a stays in the chain
        assert not np.any(partner_label(pts, b) == k)  # translating by b lands in another chain


def test_unknown_material_is_named():
    with pytest.raises(ValueError, match="unknown material 'MoTe3'"):
        get_material("MoTe3")


def test_unknown_material_lists_supported_ones():
    with pytest.raises(ValueError) as err:
        get_material("MoTe3")
    msg = str(err.value)
    assert "supported materials: " + ", ".join(sorted(MATERIALS)) in msg
    for name in ("MoS2", "WS2", "ReS2", "ReSe2", "MoSe2", "WSe2"):
        assert name in msg


# --- the data files --------------------------------------------------------------------------------
# sha256 (first 16 hex digits) of positions, cell (little-endian float64) and symbols of monolayer(name)
# as the code before resources/ built them (ase.build.mx2; the ReX2 asymmetric unit + inversion): the
# default workflow run must stay bit-identical for these materials.
_BITS = {"MoS2": "3160998b2aa2add1", "WS2": "01a88064963f24ce",
         "ReS2": "eb790b82a356dc8f", "ReSe2": "33ca654931520374"}


def _digest(atoms) -> str:
    h = hashlib.sha256()
    for arr in (atoms.positions, atoms.cell.array):
        h.update(np.ascontiguousarray(arr, "<f8").tobytes())
    h.update(" ".join(atoms.get_chemical_symbols()).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name,a,b,gamma,inter,rms,order,n_metal,n_chalc", [
    ("MoS2", 3.18, 3.18, 120.0, 6.15, {"Mo": 0.05, "S": 0.07}, 3, 1, 2),
    ("WS2", 3.153, 3.153, 120.0, 6.18, {"W": 0.045, "S": 0.07}, 3, 1, 2),
    ("ReS2", 6.41910, 6.52306, 118.837, 6.15, {"Re": 0.045, "S": 0.07}, 2, 4, 8),
    ("ReSe2", 6.66991, 6.79281, 118.813, 6.45, {"Re": 0.045, "Se": 0.06}, 2, 4, 8),
])
def test_existing_materials_unchanged(name, a, b, gamma, inter, rms, order, n_metal, n_chalc):
    mat = get_material(name)
    assert (mat.name, mat.a_A, mat.b_A, mat.gamma_deg, mat.interlayer_A) == (name, a, b, gamma, inter)
    assert list(mat.thermal_rms_A.items()) == list(rms.items())  # same values, metal first
    assert mat.rotation_order == order and mat.is_hexagonal == (order == 3)
    metal, chalc = list(rms)
    assert (mat.metal, mat.chalcogen) == (metal, chalc)
    atoms = monolayer(name)
    assert atoms.get_chemical_symbols() == [metal] * n_metal + [chalc] * n_chalc
    assert _digest(atoms) == _BITS[name]


@pytest.mark.parametrize("name,thickness", [("MoS2", 3.19), ("WS2", 3.14)])
def test_mx2_cells_are_the_ase_2h_cells(name, thickness):
    """Bit-for-bit the 2H cell of ase.build.mx2 (metal plane at z = 0), as before resources/."""
    mat = get_material(name)
    ref = mx2(formula=name, kind="2H", a=mat.a_A, thickness=thickness, vacuum=0)
    ref.positions[:, 2] -= ref.positions[0, 2]
    ref = ref[[0, 2, 1]]  # metal, lower chalcogen, upper chalcogen
    ours = monolayer(name)
    assert ours.get_chemical_symbols() == ref.get_chemical_symbols()
    assert np.array_equal(ours.positions, ref.positions)


@pytest.mark.parametrize("name", sorted(MATERIALS))
def test_monolayer_conventions(name):
    mat = get_material(name)
    atoms = monolayer(name)
    assert atoms is not monolayer(name)  # a fresh copy every time
    atoms.positions += 1.0
    assert not np.array_equal(monolayer(name).positions, atoms.positions)
    atoms = monolayer(name)
    assert list(atoms.pbc) == [True, True, False]
    cell = np.zeros((3, 3))
    cell[:2, :2] = mat.lattice_2d
    cell[2, 2] = 20.0
    assert np.array_equal(atoms.cell.array, cell)
    sym = np.array(atoms.get_chemical_symbols())
    n_metal = int(np.sum(sym == mat.metal))
    assert set(sym) == {mat.metal, mat.chalcogen}
    assert np.all(sym[:n_metal] == mat.metal)  # metals first, then chalcogens bottom to top
    assert np.all(np.diff(atoms.positions[n_metal:, 2]) >= 0)
    assert abs(atoms.positions[:, 2].mean()) < 1e-6  # midplane at z = 0
    assert 2 * n_metal == len(sym) - n_metal  # MX2


def _projected_symmetric(atoms, lattice, order, tol=1e-3) -> bool:
    """Whether the projected cell maps onto itself under a rotation by 360°/order about some atom
    column or midpoint of two columns (the candidate rotation centres of these cells)."""
    xy = atoms.positions[:, :2]
    sym = np.array(atoms.get_chemical_symbols())
    t = 2 * np.pi / order
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centres = (xy[:, None] + xy[None]).reshape(-1, 2) / 2
    for c in centres:
        moved = (xy - c) @ rot.T + c
        d = moved[:, None] - xy[None]  # (i moved, j target, 2)
        frac = np.linalg.solve(lattice.T, d.reshape(-1, 2).T).T.reshape(d.shape)
        off = np.linalg.norm((frac - np.round(frac)) @ lattice, axis=-1)
        off[sym[:, None] != sym[None]] = np.inf
        if np.all(off.min(axis=1) < tol):
            return True
    return False


@pytest.mark.parametrize("name", sorted(MATERIALS))
def test_rotation_order_matches_the_cell(name):
    """The table's rotation order and point group agree with the projected atoms of the CIF."""
    mat = get_material(name)
    atoms = monolayer(name)
    found = {n for n in (2, 3, 4, 6) if _projected_symmetric(atoms, mat.lattice_2d, n)}
    assert found == {n for n in (2, 3, 4, 6) if mat.rotation_order % n == 0}
    row = next(r for r in _table() if r["name"] == name)
    assert {"-6m2": 3, "-1": 2}[row["point_group"]] == mat.rotation_order


def _resources():
    """The data package as installed (editable install: the top-level resources/ folder)."""
    try:
        return files("vdwstack.resources")
    except ModuleNotFoundError:
        pytest.fail("vdwstack.resources is not importable: re-run `pip install -e .` "
                    "(pyproject.toml maps the folder resources/ to that package)")


def _table() -> list[dict[str, str]]:
    text = _resources().joinpath("materials.tsv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def test_every_cif_has_a_table_row_and_vice_versa():
    res = _resources()
    cifs = {p.name.removesuffix("_monolayer.cif") for p in res.joinpath("cells").iterdir()
            if p.name.endswith(".cif")}
    assert all(p.name.endswith("_monolayer.cif") for p in res.joinpath("cells").iterdir()
               if p.name.endswith(".cif"))
    names = [r["name"] for r in _table()]
    assert len(names) == len(set(names))
    assert cifs == set(names) == set(MATERIALS)
    assert {"MoS2", "WS2", "ReS2", "ReSe2", "MoSe2", "WSe2"} <= set(MATERIALS)


def test_editable_install_reads_the_top_level_folder():
    import vdwstack

    if not Path(vdwstack.__file__).resolve().is_relative_to(ROOT / "src"):
        pytest.skip("vdwstack is not installed from this source tree (editable)")
    assert Path(str(_resources())).resolve() == (ROOT / "resources").resolve()


def test_cif_positions_are_cartesian_and_p1():
    """Cartesian positions only (fractional ones would be preferred by ASE and not round-trip),
    one block, no symmetry operations beyond the identity."""
    from ase.io.cif import parse_cif

    for name in MATERIALS:
        blocks = list(parse_cif(_resources().joinpath("cells", f"{name}_monolayer.cif").open("rb")))
        assert len(blocks) == 1
        block = blocks[0]
        assert "_atom_site_cartn_x" in block and "_atom_site_fract_x" not in block
        assert block["_space_group_name_h-m_alt"] == "P 1"
        assert block["_space_group_symop_operation_xyz"] in (["x, y, z"], "x, y, z")
        assert len(block.get_symbols()) == len(monolayer(name))


def test_pyproject_lists_every_package():
    """pyproject.toml lists the packages by hand (the mapped resources/ folder rules out find)."""
    tomllib = pytest.importorskip("tomllib")
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert set(conf["packages"]) == found | {"vdwstack.resources", "vdwstack.resources.cells"}
    assert conf["package-dir"] == {"": "src", "vdwstack.resources": "resources"}


# --- the new materials render with their lattice ------------------------------------------------
def _row(material: str, n: int = 256, p: float = 0.08) -> dict:
    """A row as the CLI builds it (vdwstack.cli._row_from_args)."""
    return {
        "sample_id": "t", "material": material, "layers": 2, "Da_A": 0.7, "Db_A": 0.3,
        "Da2_A": 0.0, "Db2_A": 0.0, "theta_deg": 0.0, "rotation_deg": 0.0,
        "origin_x_A": n * p / 2, "origin_y_A": n * p / 2, "pixel_size_A": p, "height_px": n, "width_px": n,
        "seed": 7, "energy_eV": 300e3, "semiangle_mrad": 21.3, "defocus_A": 35.0, "Cs_A": 0.0,
        "source_fwhm_A": 0.6, "adf_inner_mrad": 39.0, "adf_outer_mrad": 200.0,
    }


def _first_order_lattice_constant(image: np.ndarray, p: float) -> float:
    """Hexagonal a (Å) from the radius of the six first-order Bragg spots of an image whose lattice
    has a along x (rotation 0): the |g| that maximises their summed power (windowed DFT), a = 2/(√3|g|)."""
    from vdwstack.structures.reciprocal import dft_at

    angles = np.deg2rad(30.0 + 60.0 * np.arange(6))  # first-order g directions when a ∥ x
    u = np.column_stack([np.cos(angles), np.sin(angles)])

    def best(radii):
        power = np.abs(dft_at(image, p, (radii[:, None, None] * u[None]).reshape(-1, 2))) ** 2
        return radii[int(np.argmax(power.reshape(len(radii), 6).sum(axis=1)))]

    g = best(np.arange(0.2, 0.5, 1e-3))  # a between 2.3 and 5.8 Å
    g = best(np.arange(g - 2e-3, g + 2e-3, 1e-5))
    return 2 / (np.sqrt(3) * g)


@pytest.mark.parametrize("material,a", [("MoSe2", 3.288), ("WSe2", 3.282)])
def test_diselenide_bilayer_shows_its_lattice_constant(material, a):
    from vdwstack.simulate.render import simulate_row

    mat = get_material(material)
    assert (mat.a_A, mat.b_A, mat.gamma_deg, mat.rotation_order) == (a, a, 120.0, 3)
    assert mat.metal + mat.chalcogen + "2" == material
    image = simulate_row(_row(material))
    assert image.shape == (256, 256) and np.all(np.isfinite(image)) and image.std() > 0
    measured = _first_order_lattice_constant(image, 0.08)
    assert measured == pytest.approx(a, rel=0.005), measured
    # ... and distinguishably not the sulphide's lattice (MoS2: 3.18 Å, WS2: 3.153 Å).
    assert abs(measured - get_material(mat.metal + "S2").a_A) > 0.1
