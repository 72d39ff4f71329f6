"""Stage 2, simulate: ADF-STEM images of stackings — the fast incoherent model built from abTEM
pieces (default), abTEM multislice / PRISM, analytic degradations, pseudo-experimental images."""

from vdwstack.simulate.degrade import Degradation, degrade
from vdwstack.simulate.render import (
           SimulationSettings,
           sample_atoms,
           simulate_row,
           simulate_rows,
)
from vdwstack.simulate.stage import make_pseudo_experimental, simulate_table_to_zarr

__all__ = ["Degradation", "SimulationSettings", "degrade", "make_pseudo_experimental", "sample_atoms",
           "simulate_row", "simulate_rows", "simulate_table_to_zarr"]
