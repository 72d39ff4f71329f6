import numpy as np
import pytest

from vdwstack.core.errors import ConfigError
from vdwstack.structures.enumeration import enumerate_dataset, read_table, write_table
from vdwstack.structures.geometry import StackGeometry, build_stack, slip_keys
from vdwstack.structures.symmetry import symmetry_for

REGION = (0.0, 30.0, 0.0, 30.0)


def _layer(atoms, k):
    return atoms.positions[atoms.get_tags() == k]


def test_slip_shifts_layer2_by_D_and_raises_it():
    sym = symmetry_for("ReS2")
    g0 = StackGeometry("ReS2", 2)
    g1 = StackGeometry("ReS2", 2, Da_A=1.2, Db_A=-0.4)
    region = (-40, 40, -40, 40)
    a0, a1 = build_stack(g0, region), build_stack(g1, region)
    np.testing.assert_allclose(_layer(a0, 1), _layer(a1, 1))
    D = sym.slip_to_cartesian(1.2, -0.4)
    # Every shifted layer-2 atom of a1 is a layer-2 atom of a0 moved by D.
    p0, p1 = _layer(a0, 2), _layer(a1, 2)
    inner = (np.abs(p1[:, :2]) < 30).all(axis=1)
    d = np.linalg.norm((p1[inner, None, :2] - D) - p0[None, :, :2], axis=-1).min(axis=1)
    assert d.max() < 1e-9
    dz = _layer(a1, 2)[:, 2].mean() - _layer(a1, 1)[:, 2].mean()
    assert dz == pytest.approx(6.15, abs=0.05)


def test_twist_rotates_layer2():
    a = build_stack(StackGeometry("MoS2", 2, theta_deg=13.0), (-30, 30, -30, 30))
    metals = a.positions[(np.array(a.get_chemical_symbols()) == "Mo")]
    tags = a.get_tags()[np.array(a.get_chemical_symbols()) == "Mo"]
    for k, expected in ((1, 0.0), (2, 13.0)):
        pts = metals[tags == k][:, :2]
        # Nearest-neighbour bond directions modulo 60° give the layer orientation.
        d = pts[:, None] - pts[None]
        dist = np.linalg.norm(d, axis=-1)
        nn = d[(dist > 3.0) & (dist < 3.3)]
        ang = np.rad2deg(np.arctan2(nn[:, 1], nn[:, 0])) % 60
        ang = np.where(ang > 59.9, ang - 60, ang)
        assert np.median(ang) == pytest.approx(expected, abs=1e-6)


def test_trilayer_and_vacancies():
    g = StackGeometry("MoS2", 3, Da_A=1.0, Da2_A=0.5, vacancy_fraction=0.1, seed=3)
    atoms = build_stack(g, REGION)
    assert set(atoms.get_tags()) == {1, 2, 3}
    full = build_stack(StackGeometry("MoS2", 3, Da_A=1.0, Da2_A=0.5), REGION)
    n_s_full = np.sum(np.array(full.get_chemical_symbols()) == "S")
    n_s = np.sum(np.array(atoms.get_chemical_symbols()) == "S")
    assert n_s / n_s_full == pytest.approx(0.9, abs=0.03)
    assert np.sum(np.array(atoms.get_chemical_symbols()) == "Mo") == np.sum(np.array(full.get_chemical_symbols()) == "Mo")


def test_bad_geometry_is_rejected():
    with pytest.raises(ValueError, match="vacancy_fraction"):
        build_stack(StackGeometry("MoS2", 2, vacancy_fraction=1.5), REGION)
    with pytest.raises(ValueError, match="unknown material"):
        build_stack(StackGeometry("Graphene", 2), REGION)


SPEC = {"material": "ReS2", "layers": 2, "slip_step_A": 0.8, "pixel_size_A": 0.1, "image_size_px": 64}


def test_table_is_deterministic_and_complete(tmp_path):
    t1 = enumerate_dataset("d", SPEC, seed=5, realism={"vacancy_fraction": [0, 0.05], "random_rotation": True})
    t2 = enumerate_dataset("d", SPEC, seed=5, realism={"vacancy_fraction": [0, 0.05], "random_rotation": True})
    assert t1.equals(t2)
    t3 = enumerate_dataset("d", SPEC, seed=6, realism={"random_rotation": True})
    assert not np.allclose(t1["rotation_deg"], t3["rotation_deg"])
    assert t1["sample_id"].is_unique and t1["seed"].is_unique
    assert (t1["vacancy_fraction"].between(0, 0.05)).all()
    sym = symmetry_for("ReS2")
    assert sym.is_canonical(t1["Da_A"].to_numpy(), t1["Db_A"].to_numpy()).all()
    write_table(t1, tmp_path / "t.tsv")
    back = read_table(tmp_path / "t.tsv")
    np.testing.assert_allclose(back["Da_A"], t1["Da_A"])


def test_twist_and_trilayer_tables():
    t = enumerate_dataset("tw", {"material": "MoS2", "twist_deg": {"start": 0, "stop": 60, "step": 10},
                                 "samples_per_stacking": 2, "pixel_size_A": 0.1, "image_size_px": 64}, seed=1)
    assert len(t) == 14
    assert sorted(set(t["theta_deg"])) == [0, 10, 20, 30, 40, 50, 60]
    tri = enumerate_dataset("tri", {**SPEC, "layers": 3}, seed=1)
    assert (tri["layers"] == 3).all() and tri["Da2_A"].abs().sum() > 0



def test_slip_keys_are_the_tables_slip_columns_of_each_stack():
    # One list names the slips for the tables, the geometry, the codecs and the closed loop: a
    # bilayer's table leaves D2 at zero, a trilayer's fills it.
    bi = enumerate_dataset("bi", SPEC, seed=1)
    tri = enumerate_dataset("tri", {**SPEC, "layers": 3}, seed=1)
    assert slip_keys(2) == ("Da_A", "Db_A") and slip_keys(3)[:2] == slip_keys(2)
    for layers, table in ((2, bi), (3, tri)):
        moving = [k for k in ("Da_A", "Db_A", "Da2_A", "Db2_A") if table[k].abs().sum() > 0]
        assert tuple(moving) == slip_keys(layers)
        assert set(slip_keys(layers)) <= set(StackGeometry.__dataclass_fields__)
    with pytest.raises(ValueError, match="layers must be 2 or 3.*4"):
        slip_keys(4)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"material": "MoTe3"}, "datasets.d.material"),
        ({"slip_step_A": 0}, "datasets.d.slip_step_A"),
        ({"slip_step_A": -0.1}, "datasets.d.slip_step_A"),
        ({"slip_step_A": None}, "datasets.d: no stackings"),
        ({"image_size_px": 8}, "datasets.d.image_size_px"),
        ({"microscope": {"defocus_A": [40, 30]}}, "datasets.d.microscope.defocus_A"),
        ({"microscope": {"adf_outer_mrad": 20}}, "datasets.d.microscope"),
    ],
)
def test_bad_dataset_values_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        enumerate_dataset("d", {**SPEC, **change}, seed=0)
