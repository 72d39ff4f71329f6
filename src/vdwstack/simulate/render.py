"""Clean ADF-STEM images of table rows: the atoms of a row, rendered incoherently or with abTEM."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vdwstack.core.settings import setting, settings_from_mapping
from vdwstack.simulate.incoherent import job_from_atoms, padding_px, render_incoherent
from vdwstack.simulate.multislice import (
    MultisliceSettings,
    check_sampling,
    simulate_abtem,
)
from vdwstack.simulate.optics import Optics, psf_radius_A
from vdwstack.structures.geometry import (
    StackGeometry,
    build_stack,
    field_of_view_A,
    layer_heights_A,
)
from vdwstack.structures.materials import get_material

log = logging.getLogger(__name__)

METHODS = ("incoherent", "multislice", "prism")


@dataclass(frozen=True)
class SimulationSettings:
    """How to simulate (config block ``simulation``): method, batching, abTEM's multislice/PRISM settings."""

    method: str = setting("incoherent", "incoherent (fast, default) | multislice | prism (abTEM)", enum=list(METHODS))
    per_layer_defocus: bool = setting(True, "each layer's depth shifts its focus (incoherent)")
    batch_size: int = setting(8, "images rendered together (incoherent)", minimum=1)
    multislice: MultisliceSettings = setting(factory=MultisliceSettings, doc="used by multislice / prism only")

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> SimulationSettings:
        return settings_from_mapping(cls, m, "simulation")


def stacking_row(material: str, *, layers: int = 2, slip_A: tuple[float, float] = (0.0, 0.0),
                 slip2_A: tuple[float, float] = (0.0, 0.0), twist_deg: float = 0.0, rotation_deg: float = 0.0,
                 pixel_size_A: float = 0.1, size_px: int = 256, seed: int = 0,
                 microscope: Mapping | None = None) -> dict:
    """The table row of one stacking imaged on a size_px × size_px grid at pixel_size_A (Å/px),
    centred, with the default optics overridden by `microscope` (Optics fields)."""
    from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
    from vdwstack.structures.enumeration import sample_seed

    get_material(material)
    if layers not in (1, 2, 3):
        raise ValueError(f"layers: {layers!r} is not allowed (allowed: 1, 2, 3)")
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be > 0 Å, got {pixel_size_A}")
    if size_px < 16:
        raise ValueError(f"size_px must be ≥ 16 pixels, got {size_px}")
    unknown = set(microscope or {}) - set(MICROSCOPE_DEFAULTS)
    if unknown:
        raise ValueError(f"microscope: unknown key(s) {sorted(unknown)} (allowed: {', '.join(MICROSCOPE_DEFAULTS)})")
    extent = size_px * pixel_size_A
    return {
        "sample_id": "single", "material": material, "layers": layers,
        "Da_A": float(slip_A[0]), "Db_A": float(slip_A[1]), "Da2_A": float(slip2_A[0]), "Db2_A": float(slip2_A[1]),
        "theta_deg": float(twist_deg), "rotation_deg": float(rotation_deg),
        "origin_x_A": extent / 2, "origin_y_A": extent / 2,
        "pixel_size_A": float(pixel_size_A), "height_px": int(size_px), "width_px": int(size_px),
        "seed": sample_seed(seed, "single", 0),
        **{**MICROSCOPE_DEFAULTS, **dict(microscope or {})},
    }


def sample_atoms(row: Mapping, margin_A: float = 0.0):
    """The atoms of one table row over its field of view plus a margin (Å)."""
    geom = StackGeometry.from_row(row)
    x0, x1, y0, y1 = field_of_view_A(float(row["pixel_size_A"]), int(row["height_px"]), int(row["width_px"]))
    return build_stack(geom, (x0 - margin_A, x1 + margin_A, y0 - margin_A, y1 + margin_A))


def simulate_row(row: Mapping, settings: SimulationSettings = SimulationSettings(), workers: int = 1) -> np.ndarray:
    """One clean image (float32 [H, W]) for one table row."""
    return simulate_rows([row], settings, workers)[0]


def simulate_rows(rows: list[Mapping], settings: SimulationSettings = SimulationSettings(),
                  workers: int = 1) -> np.ndarray:
    """Clean images (float32 [B, H, W]) for rows that share pixel size and shape."""
    if not rows:
        raise ValueError("no rows to simulate")
    p = float(rows[0]["pixel_size_A"])
    shape = (int(rows[0]["height_px"]), int(rows[0]["width_px"]))
    for r in rows:
        if float(r["pixel_size_A"]) != p or (int(r["height_px"]), int(r["width_px"])) != shape:
            raise ValueError("rows of one batch must share pixel_size_A, height_px and width_px")
    if settings.method == "incoherent":
        jobs = []
        for r in rows:
            optics = Optics.from_mapping(r)
            geom = StackGeometry.from_row(r)
            margin = (padding_px(optics, p, layer_heights_A(geom)) + 8) * p
            atoms = sample_atoms(r, margin)
            jobs.append(job_from_atoms(atoms, optics, geom.material, layer_heights_A(geom)))
        return render_incoherent(jobs, p, shape, settings.per_layer_defocus, workers)
    out = []
    for r in rows:
        optics = Optics.from_mapping(r)
        check_sampling(optics, settings.multislice)
        atoms = sample_atoms(r, psf_radius_A(optics) + 2.0)
        out.append(simulate_abtem(atoms, optics, p, shape, settings.method, settings.multislice,
                                  get_material(r["material"]).thermal_rms_A, seed=int(r["seed"])))
    return np.stack(out)
