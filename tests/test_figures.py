"""Report and comparison figures: a scale bar on every image panel, cyclic colours for angles,
one colour per stacking for slips (symmetry-equivalent slips look alike).

The builders below make small hand-made infer records, maps and closed-loop estimates shaped like
the real ones (tests/test_report.py builds a whole report from them)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vdwstack.closed_loop.stacking import Stacking
from vdwstack.structures.symmetry import symmetry_for

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib_scalebar.scalebar import ScaleBar  # noqa: E402

LONG_DIR = "/data/microscopy/2024/beamtime_03_titan_themis/session_17/site04_large_area_scan/exports/raw_dm4"
CYCLIC = {"twilight", "twilight_shifted", "hsv"}


def lattice_image(shape: tuple[int, int], p: float, seed: int = 0) -> np.ndarray:
    """A noisy hexagonal-lattice-like image (H, W), float32, pixel size p Å."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:shape[0], :shape[1]] * p
    img = sum(np.cos(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / 2.8) for t in (0.2, 0.2 + 2.094, 0.2 + 4.189))
    return (img + 0.4 * rng.standard_normal(shape)).astype(np.float32)


def _map_grid(shape_px, p, window_A, stride_A):
    """Rows and cols of the window grid of an image and the maps' extent (x0, x1, y1, y0) in Å."""
    rows = int((shape_px[0] * p - window_A) // stride_A) + 1
    cols = int((shape_px[1] * p - window_A) // stride_A) + 1
    x0 = y0 = window_A / 2 - stride_A / 2
    return rows, cols, [x0, x0 + cols * stride_A, y0 + rows * stride_A, y0]


def _boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, bool)
    b[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= labels[1:, :] != labels[:-1, :]
    return b


def slip_run(folder: Path, image_id: str, material: str = "ReS2", layers: int = 2, shape_px=(300, 420),
             p: float = 0.1, seed: int = 0) -> tuple[dict, Path]:
    """An infer record and its maps.npz: two domains, the larger at D = (±1.57, ±0.01) Å (one
    stacking whose sign flips with noise, as in a large-area ReS2 map), the other at (0.3, 1.9) Å."""
    rng = np.random.default_rng(seed)
    window, stride = 12.0, 2.0
    rows, cols, ext = _map_grid(shape_px, p, window, stride)
    labels = np.zeros((rows, cols), int)
    labels[:, 2 * cols // 3:] = 1
    sign = rng.choice([-1.0, 1.0], (rows, cols))
    da = np.where(labels == 0, 1.57 * sign, 0.3) + 0.01 * rng.standard_normal((rows, cols))
    db = np.where(labels == 0, 0.01 * sign, 1.9) + 0.01 * rng.standard_normal((rows, cols))
    arrays = {"image": lattice_image(shape_px, p, seed), "slip_Da_A": da, "slip_Db_A": db,
              "slip_domains": labels, "slip_boundaries": _boundaries(labels)}
    domains = [{"id": 0, "n_windows": int((labels == 0).sum()), "area_nm2": float((labels == 0).sum() * 0.04),
                "Da_A": 1.568, "Db_A": 0.004, "spread_A": 0.05, "stacking": "other"},
               {"id": 1, "n_windows": int((labels == 1).sum()), "area_nm2": float((labels == 1).sum() * 0.04),
                "Da_A": 0.301, "Db_A": 1.897, "spread_A": 0.04, "stacking": "other"}]
    if layers == 3:
        arrays.update(slip_Da2_A=-da, slip_Db2_A=db)
        for d in domains:
            d.update(Da2_A=-d["Da_A"], Db2_A=d["Db_A"])
    res = {"task": "slip", "Da_A": 1.566, "Db_A": 0.011, "uncertainty_A": 0.012, "spread_A": 0.09,
           "stacking": "other", "n_crops": 9, "model": {"architecture": "resnet50", "pixel_size_A": 0.18},
           "map": {"rows": rows, "cols": cols, "window_A": window, "stride_A": stride},
           "map_extent_A": ext, "domains": domains, "n_domains": 2, "maps": {"Da_A": np.round(da, 4).tolist()},
           "boundaries": [{"domains": [0, 1], "normal_deg": 0.0, "offset_A": 28.0, "sigma_A": 0.9}]}
    if layers == 3:
        res.update(Da2_A=-1.566, Db2_A=0.011)
    record = {"image_id": image_id, "path": f"{LONG_DIR}/{image_id}.dm4", "material": material, "layers": layers,
              "task": "slip", "status": "ok", "pixel_size_A": p, "pixel_size_source": "metadata",
              "warnings": [], "results": {"slip": res}, "errors_vs_truth": {"dD_A": 0.0123}}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "maps.npz", **arrays)
    (folder / "result.json").write_text(json.dumps(record))
    return record, folder / "maps.npz"


def twist_run(folder: Path, image_id: str, shape_px=(280, 280), p: float = 0.12) -> tuple[dict, Path]:
    """An infer record and maps.npz of a MoS2 twist near 7.3°, one domain."""
    rng = np.random.default_rng(3)
    window, stride = 15.0, 3.0
    rows, cols, ext = _map_grid(shape_px, p, window, stride)
    theta = 7.3 + 0.1 * rng.standard_normal((rows, cols))
    arrays = {"image": lattice_image(shape_px, p, 3), "twist_theta_deg": theta,
              "twist_domains": np.zeros((rows, cols), int), "twist_boundaries": np.zeros((rows, cols), bool)}
    res = {"task": "twist", "theta_deg": 7.31, "uncertainty_deg": 0.04, "spread_deg": 0.1, "n_crops": 9,
           "model": {"architecture": "resnet50"}, "map": {"rows": rows, "cols": cols, "window_A": window,
                                                           "stride_A": stride},
           "map_extent_A": ext, "domains": [{"id": 0, "n_windows": rows * cols, "theta_deg": 7.31}],
           "n_domains": 1, "maps": {"theta_deg": np.round(theta, 3).tolist()}, "boundaries": []}
    record = {"image_id": image_id, "path": f"{LONG_DIR}/{image_id}.tif", "material": "MoS2", "layers": 2,
              "task": "twist", "status": "ok", "pixel_size_A": p, "pixel_size_source": "estimated from Bragg spots",
              "warnings": [], "results": {"twist": res}}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "maps.npz", **arrays)
    return record, folder / "maps.npz"


def fake_estimate(material: str = "ReS2", twist: bool = False, layers: int = 2, mirrored: bool = False,
                  size_px: int = 130, p: float = 0.1):
    """A stand-in for a closed-loop Estimate with what comparison_figure reads (crop, simulation,
    final candidate, pose, interval), without running the loop."""
    exp = lattice_image((size_px, size_px), p, 5)
    sim = lattice_image((size_px, size_px), p, 6) * 0.9
    stacking = Stacking(theta_deg=7.3) if twist else Stacking(Da_A=-1.57, Db_A=-0.01, Da2_A=0.4, Db2_A=1.1)
    pose = SimpleNamespace(defocus_A=36.0, source_fwhm_A=0.71)
    match = SimpleNamespace(stacking=stacking, agreement=0.987, pose=pose)
    crop = SimpleNamespace(raw=exp, size_A=size_px * p)
    comparator = SimpleNamespace(crop=crop, simulated_crop=lambda m: (sim, None, None))
    final = SimpleNamespace(match=match, mirrored=mirrored, source="search")
    return SimpleNamespace(comparator=comparator, final=final, material=material, twist=twist, layers=layers,
                           interval=SimpleNamespace(radius=0.013))


def _scale_bars(ax) -> list:
    return [a for a in ax.artists if isinstance(a, ScaleBar)]


def _image_axes(fig) -> list:
    """Axes that show a specimen image: those with a grey-scale AxesImage."""
    return [ax for ax in fig.axes if any(im.get_cmap().name == "gray" for im in ax.images)]


# --- tests -----------------------------------------------------------------------------------------
def test_equivalent_slips_get_one_colour_and_the_colouring_is_continuous():
    from vdwstack.report.colours import slip_colours

    c = slip_colours("ReS2", [1.57, -1.57, 1.57, -1.57], [0.0, 0.0, -0.01, 0.01])
    np.testing.assert_allclose(c[0], c[1], atol=1e-12)  # D ≡ −D
    assert np.abs(c[2] - c[0]).max() < 0.02 and np.abs(c[3] - c[0]).max() < 0.02  # no seam at Db = 0
    assert np.abs(slip_colours("ReS2", 0.3, 1.9) - c[0]).max() > 0.1  # another stacking looks different
    rng = np.random.default_rng(1)
    for material in ("ReS2", "MoS2"):
        sym = symmetry_for(material)
        d = rng.uniform(-4, 4, (200, 2))
        ref = slip_colours(material, d[:, 0], d[:, 1])
        assert ref.shape == (200, 3) and ref.min() >= 0 and ref.max() <= 1
        xy = sym.slip_to_cartesian(d[:, 0], d[:, 1])
        for g in sym.rotations:  # every rotation of the group, with a lattice translation
            da, db = sym.cartesian_to_slip(xy @ g.T + sym.lattice[0] - 2 * sym.lattice[1])
            np.testing.assert_allclose(slip_colours(material, da, db), ref, atol=1e-9)
    # Small steps make small colour changes everywhere (no jump at cell or sector edges).
    line = np.linspace(-6, 6, 2001)
    steps = np.abs(np.diff(slip_colours("ReS2", line, 0.37 * line), axis=0)).max()
    assert steps < 0.05, steps


def test_report_image_figure_has_scale_bars_cyclic_angles_and_one_colour_per_stacking(tmp_path):
    from vdwstack.report.colours import slip_colours
    from vdwstack.report.figures import image_figure, image_figure_fig

    rec, maps = slip_run(tmp_path / "s", "res2")
    arr = dict(np.load(maps))
    fig = image_figure_fig(rec, arr)
    axes = _image_axes(fig)
    assert len(axes) == 2 and all(len(_scale_bars(ax)) == 1 for ax in axes)
    assert all(ax.get_xlabel() == "x (Å)" and ax.get_ylabel() == "y (Å)" for ax in axes)
    (overlay,) = [im for ax in fig.axes for im in ax.images if im.get_gid() == "slip-map"]
    rgb = np.asarray(overlay.get_array())
    np.testing.assert_allclose(rgb, slip_colours("ReS2", arr["slip_Da_A"], arr["slip_Db_A"]))
    dom0 = rgb[arr["slip_domains"] == 0]  # windows at +1.57 and −1.57: one stacking, one colour
    assert np.ptp(dom0, axis=0).max() < 0.05, np.ptp(dom0, axis=0)
    assert np.abs(dom0.mean(0) - rgb[arr["slip_domains"] == 1].mean(0)).max() > 0.1
    assert any(im.get_gid() == "slip-key" for ax in fig.axes for im in ax.images)
    matplotlib.pyplot.close(fig)

    tw, tmaps = twist_run(tmp_path / "t", "mos2")
    fig = image_figure_fig(tw, dict(np.load(tmaps)))
    assert all(len(_scale_bars(ax)) == 1 for ax in _image_axes(fig)) and len(_image_axes(fig)) == 2
    (tmap,) = [im for ax in fig.axes for im in ax.images if im.get_gid() == "twist-map"]
    assert tmap.get_cmap().name in CYCLIC and tmap.get_clim() == (0.0, 120.0)  # MoS2: θ ≡ θ + 120°
    assert not any("undecided" in ax.get_title() for ax in fig.axes)
    matplotlib.pyplot.close(fig)
    # an undecided alignment: the histogram names and marks the partner 60° − θ
    tw["results"]["twist"]["alignment"] = {"theta_partner_deg": 52.69, "evidence": 0.2, "decided": False}
    fig = image_figure_fig(tw, dict(np.load(tmaps)))
    assert any("or 52.69° (alignment undecided)" in ax.get_title() for ax in fig.axes)
    matplotlib.pyplot.close(fig)
    from vdwstack.report.tables import summary_table

    row = summary_table([tw]).iloc[0]
    assert row["theta_partner_deg"] == 52.69 and not row["theta_alignment_decided"]

    tri, trimaps = slip_run(tmp_path / "tri", "tri", layers=3)
    fig = image_figure_fig(tri, dict(np.load(trimaps)))
    assert all(len(_scale_bars(ax)) == 1 for ax in _image_axes(fig))
    matplotlib.pyplot.close(fig)
    image_figure(rec, maps, tmp_path / "res2.png")  # the writer callers use
    assert (tmp_path / "res2.png").stat().st_size > 10_000


def test_run_wide_slip_histogram_shows_a_stacking_with_all_its_symmetry_images(tmp_path):
    from vdwstack.report.figures import slip_cell_histogram

    rec, maps = slip_run(tmp_path / "s", "res2")
    slip_cell_histogram([rec], {"res2": maps}, tmp_path / "cell.png")
    assert (tmp_path / "cell.png").stat().st_size > 5_000


@pytest.mark.parametrize("mirrored", [False, True])
def test_comparison_figure_has_a_scale_bar_on_every_panel(tmp_path, mirrored):
    from vdwstack.closed_loop.figure import comparison_figure, comparison_figure_fig

    panels = [("slip, whole image", fake_estimate(mirrored=mirrored)),
              ("slip, domain 1", fake_estimate(layers=3)), ("twist, whole image", fake_estimate("MoS2", twist=True))]
    fig = comparison_figure_fig(panels, "res2 (ReS2): final readings")
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 9 and all(len(_scale_bars(ax)) == 1 for ax in image_axes)
    for row in range(3):
        exp, sim, diff = image_axes[3 * row: 3 * row + 3]
        assert exp.images[0].get_cmap().name == sim.images[0].get_cmap().name == "gray"
        assert diff.images[0].get_cmap().name == "RdBu_r"  # signed difference: diverging, centred on 0
        assert all(ax.get_xlabel() == "x (Å)" for ax in (exp, sim, diff))
    matplotlib.pyplot.close(fig)
    comparison_figure(panels[:1], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000
