"""Sample-sheet checks: bad ids and paths are reported with the sheet, the row and the value."""

import pandas as pd
import pytest

from vdwstack.sheets import check_sheet


def _sheet(*rows):
    return pd.DataFrame([{"image_id": i, "path": p} for i, p in rows])


def test_good_sheet_passes(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    check_sheet(_sheet(("a", "a.tif"), ("b", "results/pseudo_experimental/b.tif")), "images.tsv", "image_id", tmp_path)


@pytest.mark.parametrize("rows,match", [
    ((("a", "missing.tif"),), r"images.tsv, row 2 \('a'\).*missing.tif: no such file"),
    ((("a", "a.tif"), ("a", "a.tif")), r"row 3.*duplicate image_id"),
    ((("../up", "a.tif"),), r"ids may hold only"),
    ((("a", "notes.txt"),), r"unsupported image format '.txt'"),
    ((("a", "results/../../etc/x.tif"),), r"no such file"),
    ((("a", ""),), r"empty or malformed path"),
])
def test_bad_rows_are_named(tmp_path, rows, match):
    (tmp_path / "a.tif").write_bytes(b"x")
    with pytest.raises(ValueError, match=match):
        check_sheet(_sheet(*rows), "images.tsv", "image_id", tmp_path)
