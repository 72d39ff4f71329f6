"""Sample-sheet checks: bad ids and paths are reported with the sheet, the row and the value."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from vdwstack.core.sheets import check_sheet, read_sheet


def _sheet(*rows):
    return pd.DataFrame([{"image_id": i, "path": p} for i, p in rows])


def test_good_sheet_passes(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    check_sheet(_sheet(("a", "a.tif"), ("b", "results/pseudo_experimental/b.tif")), "images.tsv", "image_id", tmp_path)


@pytest.mark.parametrize("rows,match", [
    ((("a", "missing.tif"),), r"images.tsv, line 2 \('a'\).*missing.tif: no such file"),
    ((("a", "a.tif"), ("a", "a.tif")), r"line 3.*duplicate image_id"),
    ((("../up", "a.tif"),), r"ids may hold only"),
    ((("a", "notes.txt"),), r"unsupported image format '.txt'"),
    ((("a", "results/../../etc/x.tif"),), r"no such file"),
    ((("a", ""),), r"empty or malformed path"),
])
def test_bad_rows_are_named(tmp_path, rows, match):
    (tmp_path / "a.tif").write_bytes(b"x")
    with pytest.raises(ValueError, match=match):
        check_sheet(_sheet(*rows), "images.tsv", "image_id", tmp_path)


SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "images.schema.yaml").read_text())
HEADER = "image_id\tpath\tmaterial\tlayers\ttask\tpixel_size_A\tnotes\n"


def test_read_sheet_reads_strings_and_skips_comments(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    sheet = tmp_path / "images.tsv"
    sheet.write_text(HEADER + "# a comment line\na\ta.tif\tReS2\t2\tslip\t0.05\tnear the edge\n"
                     "b\tresults/x/b.tif\tMoS2\t2\ttwist\n")  # optional fields left out
    df = read_sheet(sheet, SCHEMA, "image_id", tmp_path)
    assert list(df["image_id"]) == ["a", "b"] and list(df["pixel_size_A"]) == ["0.05", ""]
    assert (df.map(type) == str).all().all()  # no NaN, no floats: values stay as written
    empty = tmp_path / "empty.tsv"
    empty.write_text(HEADER)
    assert read_sheet(empty, SCHEMA, "image_id", tmp_path).empty


@pytest.mark.parametrize("text,match", [
    ("", r"empty sample sheet"),
    (HEADER.replace("task", "tsak"), r"unknown column\(s\) \['tsak'\]"),
    (HEADER.replace("\ttask", ""), r"missing column\(s\) \['task'\]"),
    (HEADER + "a\ta.tif\tMoTe3\t2\tslip\t\t\n", r"line 2, column material: 'MoTe3' is not one of"),
    (HEADER + "a\ta.tif\tReS2\t4\tslip\t\t\n", r"line 2, column layers"),
    (HEADER + "a\ta.tif\tReS2\t2\tslip\t-0.1\t\n", r"line 2, column pixel_size_A"),
    (HEADER + "a\ta.tif\tReS2\t2\tslip\t\t\textra\n", r"line 2: 8 tab-separated fields, the header has 7"),
    (HEADER + "# comment\n\na\ta.tif\tReS2\t2\n", r"line 4: 4 tab-separated fields, the header has 7"),
    (HEADER.encode() + b"a\t\xff\xfe.tif\tReS2\t2\tslip\t\t\n", r"not a tab-separated UTF-8"),
    (HEADER + "a\tmissing.tif\tReS2\t2\tslip\t\t\n", r"line 2 \('a'\): missing.tif: no such file"),
])
def test_read_sheet_names_the_sheet_row_and_column(tmp_path, text, match):
    (tmp_path / "a.tif").write_bytes(b"x")
    sheet = tmp_path / "images.tsv"
    sheet.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=match) as e:
        read_sheet(sheet, SCHEMA, "image_id", tmp_path)
    assert str(sheet) in str(e.value)


def test_read_sheet_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv: no such sample sheet"):
        read_sheet(tmp_path / "nope.tsv", SCHEMA, "image_id", tmp_path)
