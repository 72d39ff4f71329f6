"""Physics of the simulators. Each test measures a property that a wrong simulator would break."""

import numpy as np
import pytest

from helpers import make_row
from vdwstack.simulate.incoherent import RenderJob, job_from_atoms, render_incoherent
from vdwstack.structures.reciprocal import dft_at, fft_twist_deg, lattice_shift_A, reciprocal_lattice
from vdwstack.structures.materials import get_material
from vdwstack.simulate.multislice import MultisliceSettings, simulate_abtem
from vdwstack.simulate.optics import Optics, adf_cross_section_A2
from vdwstack.simulate.render import sample_atoms, simulate_row
from vdwstack.structures.geometry import StackGeometry, build_stack, layer_heights_A
from vdwstack.structures.symmetry import symmetry_for


@pytest.mark.slow
def test_incoherent_matches_multislice():
    """(a) Pearson r ≥ 0.97 against abTEM multislice on a MoS2 bilayer at the default optics."""
    optics = Optics()
    geom = StackGeometry("MoS2", 2, Da_A=0.7, Db_A=0.3)
    a = get_material("MoS2").a_A
    lx, ly = 3 * a, 2 * np.sqrt(3) * a  # exact periodic rectangular supercell
    cell = build_stack(geom, (0, lx, 0, ly))
    cell.set_cell([lx, ly, 20.0])
    big = build_stack(geom, (-20, 30, -20, 30))
    p, n = 0.2, 16
    inc = render_incoherent([job_from_atoms(big, optics, "MoS2", layer_heights_A(geom))], p, (n, n))[0]
    ms = simulate_abtem(cell, optics, p, (n, n), settings=MultisliceSettings(potential_sampling_A=0.032, slice_thickness_A=2.0), periodic=True)
    r = np.corrcoef(inc.ravel(), ms.ravel())[0, 1]
    assert r >= 0.97, r
    # Absolute signal: the incidence-averaged cross-sections put the right fraction on the detector.
    assert 0.9 < ms.mean() / inc.mean() < 1.1


def _layer2_image(row):
    """Image of layer 2 alone (incoherent imaging is linear in the atoms)."""
    full = simulate_row(row)
    one = simulate_row({**row, "layers": 1})
    return full - one


@pytest.mark.parametrize("material,slip", [("ReS2", (1.3, -0.7)), ("MoS2", (0.45, 1.1))])
def test_slip_moves_top_layer_columns(material, slip):
    """(b) Shifting the top layer by D moves its columns in the image by D (within 0.02 Å)."""
    base = make_row(material, size=192, rotation_deg=23.0)
    img0 = _layer2_image(base)
    img1 = _layer2_image({**base, "Da_A": slip[0], "Db_A": slip[1]})
    sym = symmetry_for(material)
    rot = np.deg2rad(23.0)
    R = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    lattice = sym.lattice @ R.T
    expected = R @ sym.slip_to_cartesian(*slip)
    measured = lattice_shift_A(img0, img1, 0.1, lattice)
    diff = measured - expected
    frac = np.linalg.solve(lattice.T, diff)
    diff = (frac - np.round(frac)) @ lattice
    assert np.linalg.norm(diff) < 0.02, (measured, expected)


def test_subpixel_atom_position_is_not_snapped():
    """(c) A quarter-pixel move of one atom moves its image centroid by a quarter pixel (±0.005 Å)."""
    optics = Optics()
    p, n = 0.1, 160
    thermal = get_material("ReS2").thermal_rms_A

    def centroid(x, y):
        job = RenderJob(np.array([[x, y, 0.0]]), np.array(["Re"]), np.array([0]), np.array([0.0]), optics, thermal)
        img = render_incoherent([job], p, (n, n))[0].astype(np.float64)
        rows, cols = np.mgrid[0:n, 0:n]
        return np.array([(img * cols).sum(), (img * rows).sum()]) * p / img.sum()

    x0, y0 = 8.0123, 7.9871
    c0 = centroid(x0, y0)
    np.testing.assert_allclose(centroid(x0 + p / 4, y0) - c0, [p / 4, 0.0], atol=0.005)
    np.testing.assert_allclose(centroid(x0, y0 + p / 4) - c0, [0.0, p / 4], atol=0.005)
    np.testing.assert_allclose(c0, [x0, y0], atol=0.01)  # and the column sits where the atom is


@pytest.mark.parametrize("theta", [12.0, 22.0])
def test_twisted_bilayer_has_two_rotated_bragg_sets(theta):
    """(d) A twisted bilayer shows two sets of first-order spots rotated by θ."""
    row = make_row("MoS2", size=512, theta_deg=theta, rotation_deg=17.0)
    img = simulate_row(row)
    assert fft_twist_deg(img, 0.1, "MoS2") == pytest.approx(theta, abs=0.5)
    # The spots sit at the expected places: strong at layer 1's and layer 2's g, weak in between.
    G = reciprocal_lattice(get_material("MoS2").lattice_2d)

    def rot(deg):
        t = np.deg2rad(deg)
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])

    g1 = G[0] @ rot(17.0).T
    amp = lambda g: np.abs(dft_at(img, 0.1, g[None]))[0]  # noqa: E731
    mid = amp(g1 @ rot(theta / 2).T)
    assert amp(g1) > 5 * mid and amp(g1 @ rot(theta).T) > 5 * mid


def test_heavier_atoms_are_brighter():
    """(e) Re > S, W > Mo, Se > S, in cross-section and in the image."""
    optics = Optics()
    xs = {el: adf_cross_section_A2(el, optics) for el in ("S", "Se", "Mo", "W", "Re")}
    assert xs["Re"] > xs["S"] and xs["W"] > xs["Mo"] and xs["Se"] > xs["S"] and xs["Mo"] > xs["S"]
    peaks = {}
    for mat in ("MoS2", "WS2"):
        peaks[mat] = simulate_row(make_row(mat, size=96, layers=1)).max()
    assert peaks["WS2"] > 1.5 * peaks["MoS2"]
    # In ReS2 the brightest pixels are Re columns, not S.
    row = make_row("ReS2", size=128, layers=1)
    img = simulate_row(row)
    atoms = sample_atoms(row)
    pix = np.round(atoms.positions[:, :2] / 0.1).astype(int)
    inside = (pix >= 2).all(axis=1) & (pix < 126).all(axis=1)
    vals = img[pix[inside, 1], pix[inside, 0]]
    sym = np.array(atoms.get_chemical_symbols())[inside]
    assert vals[sym == "Re"].mean() > 2 * vals[sym == "S"].mean()


def test_z_exponent_shift_sets_the_metal_to_chalcogen_contrast():
    """The Mo/S cross-section ratio of the elastic model (~Z^1.8 at 39–200 mrad) moves by
    (42/16)^shift: shift −0.35 gives ~Z^1.5, +0.2 ~Z^2, the range of real HAADF contrast."""
    base = adf_cross_section_A2("Mo", Optics()) / adf_cross_section_A2("S", Optics())
    assert 5.0 < base < 6.5
    for shift in (-0.35, 0.2):
        o = Optics(adf_z_exponent_shift=shift)
        ratio = adf_cross_section_A2("Mo", o) / adf_cross_section_A2("S", o)
        assert ratio == pytest.approx(base * (42 / 16) ** shift, rel=1e-9)
    exponents = [np.log(adf_cross_section_A2("Mo", Optics(adf_z_exponent_shift=s))
                        / adf_cross_section_A2("S", Optics(adf_z_exponent_shift=s))) / np.log(42 / 16)
                 for s in (-0.35, 0.2)]
    assert 1.4 < exponents[0] < 1.6 and 1.9 < exponents[1] < 2.1
    with pytest.raises(ValueError, match="adf_z_exponent_shift"):
        Optics(adf_z_exponent_shift=float("nan"))


def test_same_seed_same_image():
    """(f) Identical rows (same seed) give identical images; another seed changes vacancies."""
    row = make_row("ReS2", size=96, vacancy_fraction=0.05, displacement_rms_A=0.02, Da_A=0.5)
    a, b = simulate_row(row), simulate_row(dict(row))
    np.testing.assert_array_equal(a, b)
    c = simulate_row({**row, "seed": 8})
    assert np.abs(a - c).max() > 1e-3 * a.max()


def test_image_frame_convention_res2():
    """(g) x = col·p, y = row·p: Re columns land where the lattice frame puts them, not mirrored."""
    p, n = 0.1, 160
    row = make_row("ReS2", size=n, layers=1, origin_x_A=3.1, origin_y_A=2.7)
    img = simulate_row(row)
    atoms = sample_atoms(row)
    re = atoms.positions[np.array(atoms.get_chemical_symbols()) == "Re", :2]
    mirrored = re * [1, -1] + [0, n * p]  # mirror y about the image's horizontal midline

    def mean_at(xy):
        pix = np.round(xy / p).astype(int)
        ok = (pix >= 3).all(axis=1) & (pix < n - 3).all(axis=1)
        return img[pix[ok, 1], pix[ok, 0]].mean()

    assert mean_at(re) > 1.5 * mean_at(mirrored)


def test_astigmatism_and_coma_shape_the_probe():
    """Out of focus, C12 stretches the probe along one axis (turning φ12 by 90° swaps the axes, as
    C12 → −C12 does); C21 moves its centroid off the axis; an `aberrations` entry replaces the
    scalar field."""
    from vdwstack.simulate.optics import probe_intensity

    def moments(optics):  # <x²>, <y²>, <x> (px) within 1.5 Å of the centre
        img = np.fft.fftshift(probe_intensity(optics, 0.1, 96))  # the probe is centred at [0, 0]
        y, x = np.indices(img.shape) - 48
        w = img * ((x**2 + y**2) < 15**2)
        w = w / w.sum()
        return np.array([(w * x**2).sum(), (w * y**2).sum(), (w * x).sum()])

    plain = moments(Optics(defocus_A=40.0))
    assert plain[0] == pytest.approx(plain[1], rel=1e-6) and abs(plain[2]) < 1e-6
    c12 = moments(Optics(defocus_A=40.0, astigmatism_A=30.0))
    assert c12[1] > 3 * c12[0]
    turned = moments(Optics(defocus_A=40.0, astigmatism_A=30.0, astigmatism_angle_deg=90.0))
    negative = moments(Optics(defocus_A=40.0, astigmatism_A=-30.0))
    np.testing.assert_allclose(turned[:2], c12[1::-1], rtol=1e-6)
    np.testing.assert_allclose(negative, turned, atol=1e-6)
    assert abs(moments(Optics(defocus_A=40.0, coma_A=2000.0))[2]) > 1.0
    override = Optics(astigmatism_A=30.0, aberrations={"C12": 0.0, "phi12": 0.0})
    assert override.abtem_aberrations()["C12"] == 0.0
