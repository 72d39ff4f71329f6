"""Stage 2, simulate: a stackings table → clean ADF-STEM images in a Zarr dataset (rule ``simulate``),
and the demo's pseudo-experimental images with known truth (rule ``pseudo_experimental``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
from tqdm.auto import tqdm

from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
from vdwstack.simulate.pseudo_experimental import make_pseudo_experimental
from vdwstack.simulate.render import SimulationSettings, simulate_rows

log = logging.getLogger(__name__)

__all__ = ["make_pseudo_experimental", "simulate_table", "simulate_table_to_zarr"]


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
    """Simulate every row of a stackings table into a Zarr dataset (schema: docs/architecture.md)."""
    from dataclasses import asdict

    from vdwstack.core.io import config_hash, write_image_dataset
    from vdwstack.structures.enumeration import read_table

    settings = SimulationSettings.from_mapping(simulation)
    table = read_table(table_path)
    log.info("simulating %d images of %s with %s", len(table), table_path, settings.method)
    attrs = {
        "simulator": {"method": settings.method, "per_layer_defocus": settings.per_layer_defocus,
                      **({"multislice": asdict(settings.multislice)} if settings.method != "incoherent" else {})},
        "microscope": {c: [float(table[c].min()), float(table[c].max())] for c in MICROSCOPE_DEFAULTS},
        "config_hash": config_hash({"simulation": dict(simulation or {}), "table": table.to_dict("list")}),
        "dataset": str(table["dataset"].iloc[0]),
    }
    write_image_dataset(out_path, table, simulate_table(table, settings, workers), attrs)
    log.info("wrote %s", out_path)
