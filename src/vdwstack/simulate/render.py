"""Simulation stage: a stackings table → clean ADF-STEM images in a Zarr dataset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vdwstack.simulate.incoherent import job_from_atoms, padding_px, render_incoherent
from vdwstack.structures.materials import get_material
from vdwstack.simulate.multislice import MultisliceSettings, check_sampling, simulate_abtem
from vdwstack.simulate.optics import Optics, psf_radius_A
from vdwstack.structures.geometry import StackGeometry, build_stack, field_of_view_A, layer_heights_A

log = logging.getLogger(__name__)

METHODS = ("incoherent", "multislice", "prism")


@dataclass(frozen=True)
class SimulationSettings:
    """How to simulate: method, batching and the abTEM settings for multislice/PRISM."""

    method: str = "incoherent"
    per_layer_defocus: bool = True
    batch_size: int = 8
    multislice: MultisliceSettings = field(default_factory=MultisliceSettings)

    @classmethod
    def from_mapping(cls, m: Mapping | None) -> SimulationSettings:
        m = dict(m or {})
        ms = m.pop("multislice", None) or {}
        unknown = set(m) - {"method", "per_layer_defocus", "batch_size"}
        if unknown:
            raise ValueError(f"simulation: unknown setting(s) {sorted(unknown)}")
        s = cls(**m, multislice=MultisliceSettings(**ms))
        if s.method not in METHODS:
            raise ValueError(f"simulation.method must be one of {METHODS}, got {s.method!r}")
        if s.batch_size < 1:
            raise ValueError(f"simulation.batch_size must be ≥ 1, got {s.batch_size}")
        return s


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


def simulate_table(table: pd.DataFrame, settings: SimulationSettings, workers: int = 1, progress: bool = True):
    """Yield (start index, images) batches for a whole table, in table order."""
    if table.empty:
        raise ValueError("the stackings table is empty")
    groups = table.groupby(["pixel_size_A", "height_px", "width_px"]).ngroups
    if groups != 1:
        raise ValueError("all rows of a dataset must share pixel_size_A, height_px and width_px")
    rows = table.to_dict("records")
    bs = settings.batch_size if settings.method == "incoherent" else 1
    with tqdm(total=len(rows), desc=f"simulate ({settings.method})", unit="img", disable=not progress) as bar:
        for start in range(0, len(rows), bs):
            batch = rows[start:start + bs]
            yield start, simulate_rows(batch, settings, workers)
            bar.update(len(batch))


def simulate_table_to_zarr(table_path, out_path, simulation: Mapping | None, workers: int = 1) -> None:
    """Simulate every row of a stackings table into a Zarr dataset (see DESIGN.md for its schema)."""
    from dataclasses import asdict

    from vdwstack.core.io import config_hash, write_image_dataset
    from vdwstack.structures.enumeration import read_table

    settings = SimulationSettings.from_mapping(simulation)
    table = read_table(table_path)
    log.info("simulating %d images of %s with %s", len(table), table_path, settings.method)
    attrs = {
        "simulator": {"method": settings.method, "per_layer_defocus": settings.per_layer_defocus,
                      **({"multislice": asdict(settings.multislice)} if settings.method != "incoherent" else {})},
        "microscope": {c: [float(table[c].min()), float(table[c].max())] for c in
                       ("energy_eV", "semiangle_mrad", "defocus_A", "Cs_A", "source_fwhm_A",
                        "adf_inner_mrad", "adf_outer_mrad")},
        "config_hash": config_hash({"simulation": dict(simulation or {}), "table": table.to_dict("list")}),
        "dataset": str(table["dataset"].iloc[0]),
    }
    write_image_dataset(out_path, table, simulate_table(table, settings, workers), attrs)
    log.info("wrote %s", out_path)
