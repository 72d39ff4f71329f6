"""Bounded fuzzing of the untrusted-input parsers: image readers and sample sheets.

Every input either parses into something valid or raises the documented clear error (ValueError /
FileNotFoundError whose message starts with the file's path). Any other exception, a hang or a
non-finite image is a bug. `VDWSTACK_FUZZ_EXAMPLES` raises the number of examples per test
(default 200, a few seconds on 2 cores; 1000 take about a minute).
"""

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vdwstack.core.images import FORMATS, read_image
from vdwstack.core.sheets import read_sheet

EXAMPLES = int(os.environ.get("VDWSTACK_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 2**22


def _seed_files() -> dict[str, bytes]:
    """Small valid files of each writable format, the starting points for mutation."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    img = (rng.random((40, 48)) * 200).astype(np.uint8)
    out = {}
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP")):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt)
        out[suffix] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, img.astype(np.float32), resolution=(1e8 / 0.1, 1e8 / 0.1), resolutionunit="CENTIMETER",
                     compression="zlib")
    out[".tif"] = buf.getvalue()
    header = np.zeros(256, np.int32)
    header[:4] = (48, 40, 1, 2)  # nx, ny, nz, mode 2 = float32
    header[52] = int.from_bytes(b"MAP ", "little")
    out[".mrc"] = header.tobytes() + img.astype(np.float32).tobytes()
    return out


SEEDS = _seed_files()


def _check(path: Path) -> None:
    try:
        # A lower size limit than the default keeps each example fast; the check is the same code.
        image, p = read_image(path, max_pixels=MAX_PIXELS)
    except (ValueError, FileNotFoundError) as e:
        assert str(e).startswith(str(path)), f"error does not name the file: {e!r}"
        return
    assert image.dtype == np.float32 and image.ndim == 2 and min(image.shape) >= 32
    assert np.isfinite(image).all() and image.std() > 0
    assert p is None or (np.isfinite(p) and p > 0)


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(FORMATS))
def test_random_bytes_under_every_suffix(data, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(data)
        _check(path)


@FUZZ
@given(suffix=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_valid_files(suffix, data):
    raw = bytearray(SEEDS[suffix])
    n = data.draw(st.integers(1, 12), label="mutations")
    for _ in range(n):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "int32"]), label="kind")
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="pos")
        if kind == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255), label="bits")
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        elif kind == "int32" and len(raw) >= pos + 4:
            # Header sizes and offsets are 32-bit fields: extreme values are the dangerous ones.
            raw[pos:pos + 4] = data.draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 65535, 2**24]),
                                         label="value").to_bytes(4, "little")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(bytes(raw))
        _check(path)


SHEET_SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "images.schema.yaml").read_text())
COLUMNS = ["image_id", "path", "material", "layers", "task", "pixel_size_A", "notes"]
FIELD = st.one_of(
    st.sampled_from(["a", "img_1", "../x", "a b", "", "ReS2", "MoS2", "2", "3", "slip", "twist", "both", "0.05",
                     "-1", "1e-3", "nan", "a.tif", "results/x.tif", "/etc/passwd", "../../a.tif", "x.TIF",
                     "a.dm4", "#c", "\"q\"", "é.png", "a\rb"]),
    st.text(max_size=12),
)
LINE = st.one_of(
    st.lists(FIELD, min_size=0, max_size=9).map("\t".join),
    st.sampled_from(["", "# comment", "\t".join(COLUMNS), "   "]),
)


@FUZZ
@given(header=st.one_of(st.just(COLUMNS), st.lists(st.sampled_from([*COLUMNS, "extra", ""]), max_size=8)),
       lines=st.lists(LINE, max_size=6), newline=st.sampled_from(["\n", "\r\n"]), raw=st.binary(max_size=32))
def test_sample_sheet_parser(header, lines, newline, raw):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a.tif").write_bytes(b"x")
        path = Path(d) / "images.tsv"
        path.write_bytes(newline.join(["\t".join(header), *lines]).encode() + raw)
        try:
            sheet = read_sheet(path, SHEET_SCHEMA, "image_id", d)
        except (ValueError, FileNotFoundError) as e:
            assert str(e).startswith(str(path)), f"error does not name the sheet: {e!r}"
            return
        assert set(sheet.columns) <= set(COLUMNS) and set(SHEET_SCHEMA["required"]) <= set(sheet.columns)
        assert (sheet.map(type) == str).all().all()
        assert sheet["image_id"].is_unique
        for p in sheet["path"]:
            assert (Path(d) / p).is_file() or (Path(p).parts[:1] == ("results",) and ".." not in Path(p).parts)


def test_fuzz_seeds_are_readable(tmp_path):
    """The mutation seeds themselves parse (otherwise the mutation test explores nothing)."""
    for suffix, raw in SEEDS.items():
        path = tmp_path / f"seed{suffix}"
        path.write_bytes(raw)
        image, _ = read_image(path)
        assert image.shape == (40, 48), suffix


if __name__ == "__main__":  # longer campaign: VDWSTACK_FUZZ_EXAMPLES=5000 python tests/test_fuzz.py
    raise SystemExit(pytest.main([__file__, "-q"]))
