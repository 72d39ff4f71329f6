"""The comparison figure: experimental crop | re-simulated crop | difference, axes in Å."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vdwstack.closed_loop.check import CheckResult
from vdwstack.closed_loop.stacking import canonical_stacking


def comparison_figure(panels: Sequence[tuple[str, CheckResult]], out_png, title: str = "") -> None:
    """One row per check: experimental crop | re-simulated crop | difference, axes in Å."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(panels))
    fig, axes = plt.subplots(rows, 3, figsize=(11.5, 3.7 * rows), squeeze=False)
    for ax_row, (label, res) in zip(axes, panels):
        comp = res.comparator
        best = res.refined if res.refined is not None else res.reading
        sim, _, _ = comp.simulated_crop(best)
        exp = comp.crop.raw
        L = comp.crop.size_A
        ext = (0, L, L, 0)
        lo, hi = np.percentile(exp, [0.5, 99.5])
        ax_row[0].imshow(exp, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        ax_row[1].imshow(sim, cmap="gray", vmin=lo, vmax=hi, extent=ext)
        diff = exp - sim
        lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        im = ax_row[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
        fig.colorbar(im, ax=ax_row[2], shrink=0.8, label="experiment − simulation")
        s = canonical_stacking(comp.material, best.stacking, res.twist)
        what = (f"θ = {s.theta_deg:.2f}°" if res.twist else f"D = ({s.Da_A:.2f}, {s.Db_A:.2f}) Å"
                + (f", D2 = ({s.Da2_A:.2f}, {s.Db2_A:.2f}) Å" if comp.layers == 3 else ""))
        ax_row[0].set_title(f"{label}: experiment", fontsize=9)
        ax_row[1].set_title(f"simulation {what}\nr = {best.agreement:.3f} (reading r = {res.reading.agreement:.3f})",
                            fontsize=9)
        ax_row[2].set_title(f"difference; defocus {best.pose.defocus_A:.0f} Å, source {best.pose.source_fwhm_A:.2f} Å",
                            fontsize=9)
        for ax in ax_row:
            ax.set_xlabel("x (Å)")
            ax.set_ylabel("y (Å)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
