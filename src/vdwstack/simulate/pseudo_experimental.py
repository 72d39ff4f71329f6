"""Pseudo-experimental images made by the pipeline itself (known truth) for demos and tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vdwstack.core.io import write_tiff
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.simulate.render import simulate_row
from vdwstack.structures.enumeration import sample_seed

GEOMETRY_KEYS = ("material", "layers", "Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg", "rotation_deg",
                 "vacancy_fraction", "displacement_rms_A")


def make_pseudo_experimental(name: str, spec: Mapping, seed: int, out_path: str | Path) -> np.ndarray:
    """Simulate the stacking in `spec`, degrade it like a microscope, write a TIFF with its truth.

    spec: material, layers, Da_A, Db_A, theta_deg, rotation_deg, pixel_size_A, size_px, optional
    microscope overrides, and ``degradation`` (fields of :class:`vdwstack.simulate.degrade.Degradation`).
    """
    size = int(spec["size_px"])
    p = float(spec["pixel_size_A"])
    row = {k: spec[k] for k in GEOMETRY_KEYS if k in spec}
    row.setdefault("layers", 2)
    row.update({**MICROSCOPE_DEFAULTS, **dict(spec.get("microscope") or {})})
    s = sample_seed(seed, "pseudo_" + name, 0)
    row.update(pixel_size_A=p, height_px=size, width_px=size, origin_x_A=size * p / 2 + 0.37,
               origin_y_A=size * p / 2 + 0.61, seed=s)
    clean = simulate_row(row)
    deg = dict(spec.get("degradation") or {})
    if "drift_px" in deg:
        deg["drift_px"] = tuple(deg["drift_px"])
    image = degrade(clean, p, Degradation(**deg), np.random.default_rng(s))
    truth = {k: row[k] for k in GEOMETRY_KEYS if k in row}
    write_tiff(out_path, image, p, {"pseudo_experimental": name, "truth": truth, "degradation": deg})
    return image
