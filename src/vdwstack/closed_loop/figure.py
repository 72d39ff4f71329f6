"""The comparison figure: experimental crop | simulation of the final reading | difference, in the
frame of the image as supplied (a mirrored reading's simulation is mirrored back), axes in Å.

Every panel has a scale bar; crop and simulation are grey on one intensity scale, the difference on
the diverging RdBu map (readable with colour-vision deficiencies) centred on zero."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vdwstack.closed_loop.estimate import Estimate
from vdwstack.closed_loop.record import values
from vdwstack.core.scalebar import add_scale_bar


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def comparison_figure(panels: Sequence[tuple[str, Estimate]], out_png, title: str = "") -> None:
    """One row per estimate: experimental crop | simulated crop | difference (PNG at `out_png`)."""
    plt = _pyplot()
    fig = comparison_figure_fig(panels, title)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def comparison_figure_fig(panels: Sequence[tuple[str, Estimate]], title: str = ""):
    """The matplotlib Figure of :func:`comparison_figure` (rows of three panels, axes in Å)."""
    plt = _pyplot()
    rows = max(1, len(panels))
    fig, axes = plt.subplots(rows, 3, figsize=(11.5, 3.7 * rows), squeeze=False)
    for ax_row, (label, est) in zip(axes, panels):
        comp = est.comparator
        sim, _, _ = comp.simulated_crop(est.final.match)
        exp = comp.crop.raw
        if est.final.mirrored:  # both back in the frame of the image as supplied
            sim, exp = np.fliplr(sim), np.fliplr(exp)
        L = comp.crop.size_A
        ext = (0, L, L, 0)
        lo, hi = np.percentile(exp, [0.5, 99.5])
        ax_row[0].imshow(exp, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        ax_row[1].imshow(sim, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        diff = exp - sim
        lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        im = ax_row[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
        fig.colorbar(im, ax=ax_row[2], shrink=0.8, label="experiment − simulation")
        v = values(est, est.final)
        if est.twist:
            what = f"θ = {v['theta_deg']:.2f}°"
        else:
            what = f"D = ({v['Da_A']:.3f}, {v['Db_A']:.3f}) Å"
            if est.layers == 3:
                what += f", D2 = ({v['Da2_A']:.3f}, {v['Db2_A']:.3f}) Å"
        if est.interval is not None:
            what += f" ± {est.interval.radius:.3f}{'°' if est.twist else ' Å'}"
        hand = ", mirror lattice" if est.final.mirrored else ""
        ax_row[0].set_title(f"{label}: experiment", fontsize=9)
        ax_row[1].set_title(f"simulation {what}{hand}\nr = {est.final.match.agreement:.3f} ({est.final.source})",
                            fontsize=9)
        pose = est.final.match.pose
        ax_row[2].set_title(f"difference; defocus {pose.defocus_A:.0f} Å, source {pose.source_fwhm_A:.2f} Å",
                            fontsize=9)
        for ax in ax_row:
            ax.set_xlabel("x (Å)")
            ax.set_ylabel("y (Å)")
            add_scale_bar(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def message_figure(out_png, text: str) -> None:
    """A small figure that says why there is no comparison (the declared output still exists)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text[:300], ha="center", va="center", wrap=True, fontsize=8)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
