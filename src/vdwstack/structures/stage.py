"""Stage 1, structures: one dataset of the config → its stackings table (rule ``structures``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vdwstack.structures.enumeration import enumerate_dataset, write_table


def write_structures(dataset: str, spec: Mapping, seed: int, microscope: Mapping | None, realism: Mapping | None,
                     out_table: str | Path) -> int:
    """Enumerate `dataset` (its config block `spec`, the global seed, microscope and realism
    blocks) and write its table (TSV, one row per sample); returns the number of samples."""
    table = enumerate_dataset(dataset, spec, seed, microscope, realism)
    write_table(table, out_table)
    return len(table)
