"""Checks on the sample sheets (config/images.tsv, config/style_references.tsv) beyond their schema.

Paths in a sheet are relative to the workflow's working directory (where `snakemake` runs, or
`-d DIR`); absolute paths are allowed. A path must name an existing file of a supported format (a
``.zspy`` may be a Zarr directory), or a file the workflow itself makes (under `results/`), so that
a typo is reported with the sheet, the row and the path, not as a missing input deep in the job
graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from vdwstack.core.images import DIRECTORY_FORMATS, FORMATS

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A sheet lists images, not data: a bigger file is a wrong path in the config.
MAX_SHEET_BYTES = 16 * 2**20


def read_sheet(path: str | Path, schema: Mapping, id_column: str, workdir: str | Path = ".") -> pd.DataFrame:
    """Read a tab-separated sample sheet, all values as strings exactly as written.

    Blank lines and lines starting with ``#`` are skipped (a ``#`` inside a value is kept: it may
    be part of a file name). Every row has as many fields as the header (trailing optional ones may be left out); each row is checked
    against `schema` (a JSON schema for one row: columns, enums, patterns) and by `check_sheet`.
    Raises FileNotFoundError for a missing sheet and ValueError naming the sheet, the line and the
    column for anything malformed. A sheet with only a header is allowed (no rows).
    """
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sample sheet")
    if path.stat().st_size > MAX_SHEET_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes is too large for a sample sheet")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a tab-separated UTF-8 sample sheet (byte {e.start} is not UTF-8)") from None
    if "\0" in text:
        raise ValueError(f"{path}: not a tab-separated UTF-8 sample sheet (it holds NUL bytes)")
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path}: empty sample sheet (it needs at least a header line)")
    columns = lines[0][1].split("\t")
    if any(not c.strip() for c in columns) or len(set(columns)) != len(columns):
        raise ValueError(f"{path}: header has empty or repeated column names: {columns}")
    allowed = set(schema.get("properties", {}))
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [c for c in schema.get("required", []) if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    rows = []
    for n, ln in lines[1:]:
        fields = ln.split("\t")
        if len(fields) < len(columns) and not set(columns[len(fields):]) & set(schema.get("required", [])):
            fields += [""] * (len(columns) - len(fields))  # trailing optional fields left out
        if len(fields) != len(columns):
            raise ValueError(f"{path}, line {n}: {len(fields)} tab-separated fields, the header has {len(columns)}")
        rows.append(fields)
    sheet = pd.DataFrame(rows, columns=columns, dtype=str)
    sheet.attrs["lines"] = [n for n, _ in lines[1:]]
    validator = jsonschema.Draft202012Validator(schema)
    for (n, _), row in zip(lines[1:], sheet.to_dict("records")):
        for err in validator.iter_errors(row):
            col = ".".join(map(str, err.absolute_path)) or "row"
            raise ValueError(f"{path}, line {n}, column {col}: {err.message}")
    check_sheet(sheet, path, id_column, workdir)
    return sheet


def check_sheet(sheet: pd.DataFrame, sheet_path: str | Path, id_column: str, workdir: str | Path = ".") -> None:
    """Raise ValueError naming the sheet, row and value for a bad id or image path."""
    where = str(sheet_path)
    seen: set[str] = set()
    line_numbers = sheet.attrs.get("lines") or [i + 2 for i in range(len(sheet))]
    for n, (_, row) in zip(line_numbers, sheet.iterrows()):
        rid, path = str(row[id_column]), str(row["path"])
        line = f"{where}, line {n} ({rid!r})"
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
        # A .zspy may be a Zarr directory store rather than a file.
        exists = full.is_file() or (p.suffix.lower() in DIRECTORY_FORMATS and full.is_dir())
        if not made_here and not exists:
            raise ValueError(f"{line}: {path}: no such file (paths are relative to {Path(workdir).resolve()})")
