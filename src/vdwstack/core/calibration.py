"""Calibrated lengths: unit strings of image axes → Å, and the pixel size of a rosettasciio signal.

Units are read case-insensitively (Å, A, Angstrom(s), nm, pm, µm in either spelling of µ, um,
micron, mm, m, and the spelled-out metre names); an axis without a unit or in pixels ('',
'<undefined>', 'px', 'pixel') is not calibrated; any other unit is refused with a ValueError naming
the file and the unit, because guessing a length there would silently give a wrong pixel size.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Length units (after NFKC normalisation and casefolding: 'Å' (U+212B or U+00C5) → 'å', 'µ' (U+00B5)
# and 'μ' (U+03BC) → 'μ') → Å per unit.
UNIT_TO_A = {
    "å": 1.0, "a": 1.0, "angstrom": 1.0, "angstroms": 1.0, "ångström": 1.0, "ångströms": 1.0, "ångstrom": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0, "nanometres": 10.0,
    "pm": 0.01, "picometer": 0.01, "picometers": 0.01, "picometre": 0.01, "picometres": 0.01,
    "μm": 1e4, "um": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4, "micrometers": 1e4,
    "micrometre": 1e4, "micrometres": 1e4,
    "mm": 1e7, "millimeter": 1e7, "millimeters": 1e7, "millimetre": 1e7, "millimetres": 1e7,
    "m": 1e10, "meter": 1e10, "meters": 1e10, "metre": 1e10, "metres": 1e10,
}
# No unit or pixels: the axis is not calibrated, whatever its scale (a scale in pixels is no length).
UNCALIBRATED_UNITS = frozenset({"", "<undefined>", "undefined", "none", "px", "pixel", "pixels"})
# Relative difference of the x and y pixel sizes above which a warning is logged (x is used).
MAX_ANISOTROPY = 0.01


def _unit_key(unit) -> str:
    """A unit string normalised for lookup: ImageJ's '\\u00B5m' escapes decoded, NFKC (Å sign →
    Å, micro sign → Greek mu), case-folded, spaces removed."""
    if unit is None:
        return ""
    if isinstance(unit, bytes):
        unit = unit.decode("latin-1")
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(unit))
    return unicodedata.normalize("NFKC", text).casefold().replace(" ", "").strip()


def unit_to_A(unit, path: str | Path = "image") -> float | None:
    """Å per `unit` of length; None for no unit or pixels (not calibrated).

    Raises ValueError naming `path` and the unit for any other string."""
    key = _unit_key(unit)
    if key in UNCALIBRATED_UNITS:
        return None
    if key in UNIT_TO_A:
        return UNIT_TO_A[key]
    raise ValueError(f"{path}: the image's axes are in {unit!r}, not a length unit this reader knows (Å, A, "
                     f"Angstrom, nm, pm, µm, um, micron, mm, m; none or 'px' means uncalibrated): is it an image "
                     f"in real space? Convert the file, or relabel its axes")


def axes_pixel_size_A(path: Path, axes: list[dict]) -> float | None:
    """Pixel size (Å/px) from the x (last signal) axis of a rosettasciio signal; None when it has
    no length unit or a non-positive scale."""
    signal_axes = [a for a in axes if a.get("navigate") is not True]
    if not signal_axes:
        return None
    sizes = []
    for ax in signal_axes[-2:]:
        factor = unit_to_A(ax.get("units"), path)
        try:
            scale = float(ax.get("scale", 1.0))
        except (TypeError, ValueError):
            scale = float("nan")
        sizes.append(scale * factor if factor is not None and np.isfinite(scale) and scale > 0 else None)
    p = sizes[-1]
    if p is None:
        return None
    if len(sizes) == 2 and sizes[0] is not None and abs(sizes[0] / p - 1) > MAX_ANISOTROPY:
        log.warning("%s: non-square pixels (x %.4g Å, y %.4g Å): using x", path, p, sizes[0])
    return p
