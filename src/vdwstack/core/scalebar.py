"""Scale bars on image axes whose data units are Å (every image panel of every figure).

matplotlib-scalebar's SI length dimension has no ångström, so a dimension with Å as its base unit
(and nm, µm) is given; the bar's length is picked from 1, 2, 5, 10, 20, … of the chosen unit.
"""

from __future__ import annotations


def add_scale_bar(ax, location: str = "lower left") -> None:
    """Add a scale bar to `ax`, an image axis in Å (Å for short bars, nm or µm for longer ones)."""
    from matplotlib_scalebar.dimension import _Dimension
    from matplotlib_scalebar.scalebar import ScaleBar

    dim = _Dimension("Å")
    dim.add_units("nm", 10.0)
    dim.add_units("µm", 1e4)
    ax.add_artist(ScaleBar(1.0, "Å", dimension=dim, location=location, length_fraction=0.25,
                           box_alpha=0.75, color="black", font_properties={"size": 8}))
