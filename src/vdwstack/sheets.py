"""Checks on the sample sheets (config/images.tsv, config/style_references.tsv) beyond their schema.

Paths in a sheet are relative to the workflow's working directory (where `snakemake` runs, or
`-d DIR`); absolute paths are allowed. A path must name an existing file of a supported format, or
a file the workflow itself makes (under `results/`), so that a typo is reported with the sheet, the
row and the path, not as a missing input deep in the job graph.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from vdwstack.images import FORMATS

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_sheet(sheet: pd.DataFrame, sheet_path: str | Path, id_column: str, workdir: str | Path = ".") -> None:
    """Raise ValueError naming the sheet, row and value for a bad id or image path."""
    where = str(sheet_path)
    seen: set[str] = set()
    for i, row in sheet.reset_index(drop=True).iterrows():
        rid, path = str(row[id_column]), str(row["path"])
        line = f"{where}, row {i + 2} ({rid!r})"
        if not ID_PATTERN.match(rid):
            raise ValueError(f"{line}: ids may hold only letters, digits, '_', '.', '-' and must start "
                             "with a letter or digit (they become folder names)")
        if rid in seen:
            raise ValueError(f"{line}: duplicate {id_column}")
        seen.add(rid)
        if not path or any(c in path for c in "\n\r\t\0"):
            raise ValueError(f"{line}: empty or malformed path {path!r}")
        p = Path(path)
        if p.suffix.lower() not in FORMATS:
            raise ValueError(f"{line}: {path}: unsupported image format {p.suffix!r} "
                             f"(use one of {', '.join(FORMATS)})")
        made_here = not p.is_absolute() and p.parts[:1] == ("results",) and ".." not in p.parts
        full = p if p.is_absolute() else Path(workdir) / p
        if not made_here and not full.is_file():
            raise ValueError(f"{line}: {path}: no such file (paths are relative to {Path(workdir).resolve()})")
