import numpy as np
import pytest
from ase.io import read

from vdwstack.structures.materials import MATERIALS, get_material, monolayer


@pytest.mark.parametrize("name", sorted(MATERIALS))
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
