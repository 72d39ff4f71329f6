"""Checks on the sample sheets (config/images.tsv, config/style_references.tsv) beyond their schema.

Paths in a sheet are relative to the workflow's working directory (where `snakemake` runs, or
`-d DIR`); absolute paths are allowed. A path must name an existing file of a supported format, or
a file the workflow itself makes (under `results/`), so that a typo is reported with the sheet, the
row and the path, not as a missing input deep in the job graph.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from vdwstack.images import FORMATS

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A sheet lists images, not data: a bigger file is a wrong path in the config.
MAX_SHEET_BYTES = 16 * 2**20


def read_sheet(path: str | Path, schema: Mapping, id_column: str, workdir: str | Path = ".") -> pd.DataFrame:
    """Read a tab-separated sample sheet (``#`` starts a comment), all values as strings.

    Every row is checked against `schema` (a JSON schema for one row: required columns, enums,
    patterns) and by `check_sheet`. Raises FileNotFoundError for a missing sheet and ValueError
    naming the sheet, the row and the column for anything malformed; an empty sheet (header only)
    is allowed.
    """
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sample sheet")
    if path.stat().st_size > MAX_SHEET_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes is too large for a sample sheet")
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False,
                            quoting=csv.QUOTE_NONE, encoding="utf-8", on_bad_lines="error")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty sample sheet (it needs at least a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a tab-separated UTF-8 sample sheet ({str(e).strip().splitlines()[0]})") from None
    columns = [str(c) for c in sheet.columns]
    unnamed = [c for c in columns if c.startswith("Unnamed:") or not c.strip()]
    if unnamed or len(set(columns)) != len(columns):
        raise ValueError(f"{path}: header has empty or repeated column names: {columns}")
    allowed = set(schema.get("properties", {}))
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [c for c in schema.get("required", []) if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    validator = jsonschema.Draft202012Validator(schema)
    for i, row in enumerate(sheet.to_dict("records")):
        for err in validator.iter_errors(row):
            col = ".".join(map(str, err.absolute_path)) or "row"
            raise ValueError(f"{path}, row {i + 2}, column {col}: {err.message}")
    check_sheet(sheet, path, id_column, workdir)
    return sheet


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
