"""The report's matplotlib figures, each written to a PNG file (lengths in Å, angles in degrees).

Matplotlib is imported on first use with the non-interactive Agg backend, so that importing the
report never needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _map_panels(fig, ax_img, ax_map, img: np.ndarray, ext_img: tuple, record: Mapping, task: str,
                arr: Mapping[str, np.ndarray]) -> None:
    """The image alone (ax_img) and with the task's map and domain boundaries overlaid (ax_map).

    img: (H, W) image shown over ext_img (Å); the map (rows, cols of windows) is shown over the
    result's map_extent_A, boundaries at the window centres (stride_A apart).
    """
    r = record["results"][task]
    ext = r["map_extent_A"]
    key, unit = ("Da_A", "Å") if task == "slip" else ("theta_deg", "°")
    m = arr[f"{task}_{key}"]
    p = record["pixel_size_A"]
    lo, hi = np.percentile(img, [0.5, 99.5])
    ax_img.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext_img)
    ax_img.set_title(f"{record['image_id']} ({p:.4f} Å/px, {record['pixel_size_source']})", fontsize=9)
    ax_map.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext_img)
    im = ax_map.imshow(m, cmap="twilight" if task == "twist" else "viridis", alpha=0.55, extent=ext,
                       interpolation="nearest")
    b = arr[f"{task}_boundaries"]
    if b.any():
        yy, xx = np.nonzero(b)
        step = r["map"]["stride_A"]
        ax_map.plot(ext[0] + (xx + 0.5) * step, ext[3] + (yy + 0.5) * step, "r.", ms=3, label="domain boundary")
        ax_map.legend(fontsize=7, loc="lower right")
    fig.colorbar(im, ax=ax_map, label=f"{key.split('_')[0]} ({unit})", shrink=0.8)
    ax_map.set_title(f"{task} map, window {r['map']['window_A']:.0f} Å, stride {r['map']['stride_A']:.1f} Å",
                     fontsize=9)
    for ax in (ax_img, ax_map):
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")


def _slip_histogram_panel(ax, arr: Mapping[str, np.ndarray], result: Mapping) -> None:
    """2-D histogram of the map's (Da, Db) in Å, the whole-image reading marked."""
    ax.hist2d(arr["slip_Da_A"].ravel(), arr["slip_Db_A"].ravel(), bins=30, cmap="viridis", cmin=1)
    ax.plot(result["Da_A"], result["Db_A"], "r+", ms=14, mew=2, label="whole image")
    ax.set_xlabel("Da (Å)")
    ax.set_ylabel("Db (Å)")
    ax.set_title(f"Da = {result['Da_A']:.3f}, Db = {result['Db_A']:.3f} Å ± {result['uncertainty_A']:.3f} Å",
                 fontsize=9)
    ax.legend(fontsize=7)


def _twist_histogram_panel(ax, arr: Mapping[str, np.ndarray], result: Mapping) -> None:
    """Histogram of the map's θ in degrees, the whole-image reading marked."""
    ax.hist(arr["twist_theta_deg"].ravel(), bins=30, color="C1")
    ax.axvline(result["theta_deg"], color="k", ls="--", label="whole image")
    ax.set_xlabel("θ (°)")
    ax.set_ylabel("windows")
    ax.set_title(f"θ = {result['theta_deg']:.2f}° ± {result['uncertainty_deg']:.2f}°", fontsize=9)
    ax.legend(fontsize=7)


def image_figure(record: Mapping, maps_npz: str | Path, out_png: str | Path) -> None:
    """Image with the slip (or twist) map overlaid, domain boundaries, and the map's histogram.

    One row of three panels per task of the record; maps_npz holds "image" (H, W) and per task
    "<task>_<value>" and "<task>_boundaries" on the window grid.
    """
    plt = _plt()
    arr = np.load(maps_npz)
    tasks = list(record["results"])
    fig, axes = plt.subplots(len(tasks), 3, figsize=(13, 4.2 * len(tasks)), squeeze=False)
    img = arr["image"]
    p = record["pixel_size_A"]
    ext_img = (0, img.shape[1] * p, img.shape[0] * p, 0)
    for ax_row, t in zip(axes, tasks):
        _map_panels(fig, ax_row[0], ax_row[1], img, ext_img, record, t, arr)
        hist_panel = _slip_histogram_panel if t == "slip" else _twist_histogram_panel
        hist_panel(ax_row[2], arr, record["results"][t])
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _slips_by_material(records: Sequence[Mapping], maps: Mapping[str, str | Path]) -> dict[str, list[np.ndarray]]:
    """material → the (N, 2) arrays of (Da, Db) in Å of every map window, one array per image."""
    by_mat: dict[str, list[np.ndarray]] = {}
    for r in records:
        if r.get("status") == "ok" and "slip" in r["results"]:
            a = np.load(maps[r["image_id"]])
            by_mat.setdefault(r["material"], []).append(np.stack([a["slip_Da_A"].ravel(), a["slip_Db_A"].ravel()], -1))
    return by_mat


def _slip_cell_panel(fig, ax, mat: str, slips: list[np.ndarray]) -> None:
    """One material's slips in Cartesian Å over the slip cell, high-symmetry stackings marked."""
    from vdwstack.structures.names import stacking_names
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(mat)
    d = np.concatenate(slips)
    xy = sym.slip_to_cartesian(d[:, 0], d[:, 1]).reshape(-1, 2)
    lat = sym.lattice
    reach = np.abs(lat).sum(axis=0) / 2 + 0.2
    edges = [np.arange(-r, r + 0.1, 0.1) for r in reach]  # 0.1 Å bins over the whole cell
    h = ax.hist2d(xy[:, 0], xy[:, 1], bins=edges, cmap="viridis", cmin=1)
    fig.colorbar(h[3], ax=ax, label="windows", shrink=0.8)
    for name, (da, db) in stacking_names(mat).items():
        c = sym.slip_to_cartesian(np.array(da), np.array(db)).reshape(2)
        ax.plot(*c, "r^", ms=9)
        ax.annotate(name, c, textcoords="offset points", xytext=(5, 5), color="r")
    cell = np.array([[0, 0], lat[0], lat[0] + lat[1], lat[1], [0, 0]]) - (lat[0] + lat[1]) / 2
    ax.plot(cell[:, 0], cell[:, 1], "k-", lw=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("Dx (Å)")
    ax.set_ylabel("Dy (Å)")
    ax.set_title(f"{mat}: slips of all map windows", fontsize=9)


def slip_cell_histogram(records: Sequence[Mapping], maps: Mapping[str, str | Path], out_png: str | Path) -> None:
    """2-D histogram of all map slips (Cartesian, canonical) per material, high-symmetry stackings marked."""
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
