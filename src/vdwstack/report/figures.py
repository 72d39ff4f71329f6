"""The report's matplotlib figures, each written to a PNG file (lengths in Å, angles in degrees).

Image panels are grey with a scale bar; magnitudes (counts) use viridis; angles use the cyclic
'twilight' over their full period; slips are coloured by :mod:`vdwstack.report.colours`, which gives
symmetry-equivalent slips one colour, with the colour key shown beside the map. Each figure has a
builder that returns the matplotlib Figure (for tests and notebooks) and a writer that saves the PNG.

Matplotlib is imported on first use with the non-interactive Agg backend, so that importing the
report never needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vdwstack.core.scalebar import add_scale_bar
from vdwstack.report.colours import DOMAIN_COLOURS, slip_colours, slip_key

# Cyclic colour map of angles (perceptually uniform, readable with colour-vision deficiencies).
CYCLIC_CMAP = "twilight"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _window_xy_A(ext: Sequence[float], step_A: float, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) in Å of map windows at (rows, cols), for a map of extent (x0, x1, y1, y0)."""
    return ext[0] + (np.asarray(cols) + 0.5) * step_A, ext[3] + (np.asarray(rows) + 0.5) * step_A


def _slip_overlay(record: Mapping, arr: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """RGB (rows, cols, 3) of the slip map and what coloured it.

    Bilayers: the symmetry-invariant slip colour of every window. Trilayers (a pair of slips, no
    2-D key): the domain label of every window in Okabe–Ito colours."""
    if "slip_Da2_A" not in arr:
        return slip_colours(record["material"], arr["slip_Da_A"], arr["slip_Db_A"]), "slip"
    from matplotlib.colors import to_rgb

    labels = np.asarray(arr["slip_domains"], int)
    palette = np.array([to_rgb(c) for c in DOMAIN_COLOURS])
    return palette[labels % len(palette)], "domain"


def _mark_domains(ax, r: Mapping, arr: Mapping[str, np.ndarray], task: str, ext) -> None:
    """Domain boundaries (red dots at the boundary windows) and each domain's id at its centroid."""
    step = r["map"]["stride_A"]
    b = arr.get(f"{task}_boundaries")
    if b is not None and np.asarray(b).any():
        x, y = _window_xy_A(ext, step, *np.nonzero(b))
        ax.plot(x, y, "r.", ms=3, label="domain boundary")
        ax.legend(fontsize=7, loc="lower right")
    labels = arr.get(f"{task}_domains")
    if labels is None or len(r.get("domains", [])) < 2:
        return
    for d in r["domains"]:
        rows, cols = np.nonzero(np.asarray(labels) == d["id"])
        if len(rows):
            x, y = _window_xy_A(ext, step, rows.mean(), cols.mean())
            name = f"{d['id']}" + (f" {d['stacking']}" if d.get("stacking") not in (None, "other") else "")
            ax.text(x, y, name, fontsize=8, ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})


def _map_panels(fig, ax_img, ax_map, img: np.ndarray, ext_img: tuple, record: Mapping, task: str,
                arr: Mapping[str, np.ndarray]) -> None:
    """The image alone (ax_img) and with the task's map and domain boundaries overlaid (ax_map).

    img: (H, W) image shown over ext_img (Å); the map (rows, cols of windows) is shown over the
    result's map_extent_A, boundaries at the window centres (stride_A apart). Slips are coloured so
    that one stacking has one colour (key in the next panel); θ on the cyclic map over its period.
    """
    from vdwstack.structures.symmetry import symmetry_for

    r = record["results"][task]
    ext = r["map_extent_A"]
    p = record["pixel_size_A"]
    lo, hi = np.percentile(img, [0.5, 99.5])
    for ax in (ax_img, ax_map):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext_img)
    ax_img.set_title(f"image, {p:.4f} Å/px ({record['pixel_size_source']})", fontsize=9)
    if task == "slip":
        rgb, by = _slip_overlay(record, arr)
        im = ax_map.imshow(rgb, alpha=0.55, extent=ext, interpolation="nearest")
        what = "slip map, one colour per stacking (key →)" if by == "slip" else "slip domains"
    else:
        period = symmetry_for(record["material"]).twist_period_deg
        # The full period (θ ≡ θ + period) on the cyclic map: folded readings fill its first half,
        # so θ and 60° − θ (different structures) get different colours.
        im = ax_map.imshow(arr["twist_theta_deg"], cmap=CYCLIC_CMAP, vmin=0.0, vmax=period, alpha=0.7,
                           extent=ext, interpolation="nearest")
        fig.colorbar(im, ax=ax_map, label="θ (°)", shrink=0.8)
        what = "twist map"
    im.set_gid(f"{task}-map")
    _mark_domains(ax_map, r, arr, task, ext)
    ax_map.set_title(f"{what}\nwindow {r['map']['window_A']:.0f} Å, stride {r['map']['stride_A']:.1f} Å",
                     fontsize=9)
    for ax in (ax_img, ax_map):
        ax.set_xlim(ext_img[0], ext_img[1])
        ax.set_ylim(ext_img[2], ext_img[3])
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        add_scale_bar(ax)


def _cell_outline(ax, lat: np.ndarray) -> None:
    """The unit cell (rows a, b of lat in Å) centred on the origin."""
    cell = np.array([[0, 0], lat[0], lat[0] + lat[1], lat[1], [0, 0]]) - (lat[0] + lat[1]) / 2
    ax.plot(cell[:, 0], cell[:, 1], "k-", lw=0.8)


def _mark_stackings(ax, mat: str, colour: str = "k") -> None:
    """The material's named high-symmetry stackings (open triangles) in Cartesian Å."""
    from vdwstack.structures.names import stacking_names
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(mat)
    for name, (da, db) in stacking_names(mat).items():
        c = sym.slip_to_cartesian(np.array(da), np.array(db)).reshape(2)
        ax.plot(*c, "^", color=colour, ms=7, mfc="none")
        ax.annotate(name, c, textcoords="offset points", xytext=(5, 5), fontsize=8, color=colour)


def _unfolded(mat: str, da_A: np.ndarray, db_A: np.ndarray) -> np.ndarray:
    """Cartesian slips (Å) with every image under the material's rotations, in the Wigner–Seitz cell:
    (n_group · N, 2). One stacking then shows as the same symmetric set of points wherever noise
    puts its canonical representative."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(mat)
    xy = sym.slip_to_cartesian(np.ravel(da_A), np.ravel(db_A)).reshape(-1, 2)
    return sym.wigner_seitz(np.concatenate([xy @ g.T for g in sym.rotations]))


def _slip_key_panel(ax, record: Mapping, arr: Mapping[str, np.ndarray], result: Mapping) -> None:
    """The slip colour key over the slip cell (Cartesian Å), the map's windows as dots and the
    whole-image reading marked; for trilayers (no key), the 2-D histogram of the first slip."""
    from vdwstack.structures.symmetry import symmetry_for

    mat = record["material"]
    sym = symmetry_for(mat)
    half = float(np.abs(sym.lattice).sum(axis=0).max() / 2 + 0.2)
    if "slip_Da2_A" not in arr:
        key, ext = slip_key(mat, half)
        ax.imshow(key, extent=ext, origin="lower", interpolation="bilinear").set_gid("slip-key")
    pts = _unfolded(mat, arr["slip_Da_A"], arr["slip_Db_A"])
    ax.plot(pts[:, 0], pts[:, 1], ".", color="k", ms=3, alpha=0.35, rasterized=True, label="map windows")
    whole = _unfolded(mat, np.array([result["Da_A"]]), np.array([result["Db_A"]]))
    ax.plot(whole[:, 0], whole[:, 1], "w+", ms=12, mew=2.5)
    ax.plot(whole[:, 0], whole[:, 1], "k+", ms=10, mew=1.2, label="whole image")
    _cell_outline(ax, sym.lattice)
    _mark_stackings(ax, mat)
    ax.set(xlim=(-half, half), ylim=(-half, half), aspect="equal", xlabel="Dx (Å)", ylabel="Dy (Å)")
    ax.set_title(f"network: D = ({result['Da_A']:.3f}, {result['Db_A']:.3f}) ± {result['uncertainty_A']:.3f} Å"
                 "\n(every symmetry image shown)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def _twist_histogram_panel(ax, arr: Mapping[str, np.ndarray], result: Mapping) -> None:
    """Histogram of the map's θ in degrees, the whole-image reading marked."""
    ax.hist(arr["twist_theta_deg"].ravel(), bins=30, color="C1")
    ax.axvline(result["theta_deg"], color="k", ls="--", label="whole image")
    title = f"θ = {result['theta_deg']:.2f}° ± {result['uncertainty_deg']:.2f}°"
    align = result.get("alignment") or {}
    if align and not align["decided"]:  # AA-like or AA′-like: the network cannot tell
        ax.axvline(align["theta_partner_deg"], color="k", ls=":", label="partner θ_max − θ")
        title += f"\nor {align['theta_partner_deg']:.2f}° (alignment undecided)"
    ax.set_xlabel("θ (°)")
    ax.set_ylabel("windows")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def image_figure_fig(record: Mapping, arr: Mapping[str, np.ndarray]):
    """The Figure of :func:`image_figure` from the maps already loaded (arr: name → array)."""
    plt = _plt()
    tasks = list(record["results"])
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 4.2 * len(tasks)), squeeze=False)
    img = arr["image"]
    p = record["pixel_size_A"]
    ext_img = (0, img.shape[1] * p, img.shape[0] * p, 0)
    for ax_row, t in zip(axes, tasks):
        _map_panels(fig, ax_row[0], ax_row[1], img, ext_img, record, t, arr)
        if t == "slip":
            _slip_key_panel(ax_row[2], record, arr, record["results"][t])
        else:
            _twist_histogram_panel(ax_row[2], arr, record["results"][t])
    # The id on top of the whole figure: a long one would run over the panels' titles.
    fig.suptitle(f"{record['image_id']} ({record['material']}): the network's maps", fontsize=10)
    fig.tight_layout()
    return fig


def image_figure(record: Mapping, maps_npz: str | Path, out_png: str | Path) -> None:
    """Image with the slip (or twist) map overlaid, domain boundaries, and the slip key (or the θ
    histogram), written to out_png.

    One row of three panels per task of the record; maps_npz holds "image" (H, W) and per task
    "<task>_<value>" (Da_A, Db_A or theta_deg), "<task>_domains" and "<task>_boundaries" on the
    window grid (rows, cols).
    """
    plt = _plt()
    with np.load(maps_npz) as npz:
        arr = {k: npz[k] for k in npz.files}
    fig = image_figure_fig(record, arr)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _slips_by_material(records: Sequence[Mapping], maps: Mapping[str, str | Path]) -> dict[str, list[np.ndarray]]:
    """material → the (N, 2) arrays of (Da, Db) in Å of every map window, one array per image."""
    by_mat: dict[str, list[np.ndarray]] = {}
    for r in records:
        if r.get("status") == "ok" and "slip" in r["results"]:
            with np.load(maps[r["image_id"]]) as a:
                d = np.stack([a["slip_Da_A"].ravel(), a["slip_Db_A"].ravel()], -1)
            by_mat.setdefault(r["material"], []).append(d)
    return by_mat


def _slip_cell_panel(fig, ax, mat: str, slips: list[np.ndarray]) -> None:
    """One material's slips in Cartesian Å over the slip cell, high-symmetry stackings marked.

    Every slip is shown with all its images under the material's rotations (weight 1/n each), so a
    stacking is one symmetric set of peaks, not split by where noise puts its canonical value."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(mat)
    d = np.concatenate(slips)
    xy = _unfolded(mat, d[:, 0], d[:, 1])
    reach = np.abs(sym.lattice).sum(axis=0) / 2 + 0.2
    edges = [np.arange(-r, r + 0.1, 0.1) for r in reach]  # 0.1 Å bins over the whole cell
    w = np.full(len(xy), 1.0 / sym.group_order)
    h = ax.hist2d(xy[:, 0], xy[:, 1], bins=edges, weights=w, cmap="viridis", cmin=w[0] / 2)
    fig.colorbar(h[3], ax=ax, label="windows", shrink=0.8)
    _mark_stackings(ax, mat, colour="r")
    _cell_outline(ax, sym.lattice)
    ax.set(aspect="equal", xlabel="Dx (Å)", ylabel="Dy (Å)")
    ax.set_title(f"{mat}: slips of all map windows", fontsize=9)


def slip_cell_histogram(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_png: str | Path) -> None:
    """2-D histogram of all map slips (Cartesian Å, with their symmetry images) per material,
    high-symmetry stackings marked."""
    plt = _plt()
    by_mat = _slips_by_material(records, maps)
    mats = sorted(by_mat) or ["(none)"]
    fig, axes = plt.subplots(1, len(mats), figsize=(4.6 * len(mats), 4.2), squeeze=False)
    for ax, mat in zip(axes[0], mats):
        if mat not in by_mat:
            ax.text(0.5, 0.5, "no slip results", ha="center", transform=ax.transAxes)
            continue
        _slip_cell_panel(fig, ax, mat, by_mat[mat])
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def twist_histogram(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_png: str | Path) -> None:
    """Histogram of the twist angles (°) of all map windows of all images."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    vals = [np.load(maps[r["image_id"]])["twist_theta_deg"].ravel()
            for r in records if r.get("status") == "ok" and "twist" in r["results"]]
    if vals:
        ax.hist(np.concatenate(vals), bins=60, color="C1")
    else:
        ax.text(0.5, 0.5, "no twist results", ha="center", transform=ax.transAxes)
    ax.set_xlabel("θ (°)")
    ax.set_ylabel("map windows")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def training_curves(loss_csvs: Sequence[str | Path], out_png: str | Path) -> None:
    """Loss curves of DRIT (total and discriminator) and of every regressor (running mean of 25).

    A CSV with an "iteration" column is DRIT's; one with "step" a regressor's, labelled by its
    two parent folders (material and task).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for path in loss_csvs:
        t = pd.read_csv(path)
        path = Path(path)
        if "iteration" in t:  # DRIT
            for col in ("total", "discriminator"):
                if col in t:
                    axes[0].plot(t["iteration"], t[col].rolling(25, min_periods=1).mean(), label=col)
        elif "step" in t:
            axes[1].plot(t["step"], t["loss"].rolling(25, min_periods=1).mean(),
                         label=f"{path.parent.parent.name} {path.parent.name}")
    axes[0].set(xlabel="iteration", ylabel="loss", title="DRIT")
    axes[1].set(xlabel="step", ylabel="loss (running mean)", title="regressors", yscale="log")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
