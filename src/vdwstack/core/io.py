"""Files: the Zarr image datasets, TIFF images and calibrated maps, with the pixel size travelling along."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("vdwstack", "abtem", "ase", "numpy", "scipy", "zarr", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def config_hash(obj) -> str:
    """Stable SHA-256 (first 16 hex digits) of a JSON-serialisable config slice."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


LABEL_UNITS = {
    "Da_A": "Å", "Db_A": "Å", "Da2_A": "Å", "Db2_A": "Å", "theta_deg": "degree",
    "rotation_deg": "degree", "pixel_size_A": "Å/px", "defocus_A": "Å", "semiangle_mrad": "mrad",
    "energy_eV": "eV", "source_fwhm_A": "Å", "Cs_A": "Å",
}


def write_image_dataset(
    path: str | os.PathLike,
    table: pd.DataFrame,
    batches: Iterable[tuple[int, np.ndarray]],
    attrs: Mapping,
    chunk_images: int = 16,
) -> None:
    """Write images [N, H, W] float32 and the table's numeric columns as 1-D label arrays.

    The dataset is written to ``<path>.partial`` and moved into place only when complete, so an
    interrupted run never leaves a truncated dataset that looks finished.
    """
    import zarr

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    n = len(table)
    H, W = int(table["height_px"].iloc[0]), int(table["width_px"].iloc[0])
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    images = root.create_array("images", shape=(n, H, W), chunks=(min(chunk_images, n), H, W), dtype="float32")
    labels = root.create_group("labels")
    # The pixel size is one attribute of the whole dataset, not a label column.
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and c != "pixel_size_A"]
    for c in numeric:
        labels.create_array(c, data=table[c].to_numpy(np.float64))
    written = np.zeros(n, bool)
    for start, imgs in batches:
        if not np.all(np.isfinite(imgs)):
            raise FloatingPointError(f"non-finite pixels in images {start}..{start + len(imgs) - 1}")
        images[start:start + len(imgs)] = imgs.astype(np.float32)
        written[start:start + len(imgs)] = True
    if not written.all():
        raise RuntimeError(f"only {written.sum()} of {n} images were written")
    root.attrs.update({
        "sample_ids": table["sample_id"].astype(str).tolist(),
        "label_columns": numeric,
        "label_units": {c: LABEL_UNITS[c] for c in numeric if c in LABEL_UNITS},
        "pixel_size_A": _one_pixel_size(table),
        "material": sorted(table["material"].unique().tolist()),
        "layers": sorted(int(v) for v in table["layers"].unique()),
        "versions": software_versions(),
        "array_convention": "images[n, row, col]; x = col * pixel_size_A, y = row * pixel_size_A",
        "intensity_unit": "fraction of the incident beam reaching the ADF detector",
        **dict(attrs),
    })
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _one_pixel_size(table: pd.DataFrame) -> float:
    values = np.unique(table["pixel_size_A"].to_numpy(np.float64))
    if len(values) != 1:
        raise ValueError(f"a dataset has one pixel size; its table has {len(values)}: {values.tolist()}")
    return float(values[0])


def open_image_dataset(path: str | os.PathLike):
    """Open a dataset read-only: returns (zarr group, labels as a DataFrame)."""
    import zarr

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such image dataset")
    root = zarr.open_group(str(path), mode="r")
    if "images" not in root:
        raise ValueError(f"{path}: not a vdwstack image dataset (no 'images' array)")
    labels = pd.DataFrame({c: root["labels"][c][:] for c in root.attrs["label_columns"]})
    labels.insert(0, "sample_id", root.attrs["sample_ids"])
    return root, labels


def keep_checkpoints_only_for(out_dir: str | os.PathLike, fingerprint: str) -> None:
    """Clear ``out_dir/checkpoints`` and ``losses.csv`` unless they were made for `fingerprint`
    (the same data and settings), so a restarted job never resumes someone else's run."""
    import logging

    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    stamp = ckpt_dir / "fingerprint.txt"
    if ckpt_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        logging.getLogger(__name__).warning(
            "checkpoints in %s belong to other data or settings: starting afresh", ckpt_dir)
        for f in ckpt_dir.glob("*"):
            f.unlink()
        (out / "losses.csv").unlink(missing_ok=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def write_tiff(path: str | os.PathLike, image: np.ndarray, pixel_size_A: float, metadata: Mapping | None = None) -> None:
    """Float32 TIFF with the pixel size in its resolution tags (pixels per cm) and a JSON description."""
    import tifffile

    px_per_cm = 1e8 / pixel_size_A
    desc = json.dumps({"pixel_size_A": pixel_size_A, **dict(metadata or {})}, default=str)
    tifffile.imwrite(
        path, np.asarray(image, np.float32), resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER",
        description=desc, metadata=None,
    )


MAP_UNITS = {**LABEL_UNITS, "domains": "domain id", "boundaries": "1 = next to another domain"}


def map_axes_nm(shape: tuple[int, int], extent_A) -> list[dict]:
    """Calibrated axes of a map [rows, cols] in nm, as rosettasciio/HyperSpy describe them
    (y then x: name, size, scale, offset, units, navigate): `extent_A` = (x0, x1, y1, y0) in Å of
    the map's outer edges (imshow's extent, y0 the top edge); the offset is the first pixel's centre."""
    x0, x1, y1, y0 = (float(v) for v in extent_A)
    rows, cols = int(shape[0]), int(shape[1])
    sx, sy = (x1 - x0) / cols / 10, (y1 - y0) / rows / 10
    return [{"name": "y", "size": rows, "scale": sy, "offset": y0 / 10 + sy / 2, "units": "nm", "navigate": False},
            {"name": "x", "size": cols, "scale": sx, "offset": x0 / 10 + sx / 2, "units": "nm", "navigate": False}]


def write_imagej_tiff(path: str | os.PathLike, image: np.ndarray, pixel_size_A: float,
                      origin_A: tuple[float, float] = (0.0, 0.0), info: Mapping | None = None) -> None:
    """Float32 TIFF calibrated in nm for ImageJ/Fiji, HyperSpy and this package's reader.

    image: [H, W] (any real dtype; written as float32). pixel_size_A: Å/px, written as ImageJ's
    ``unit=nm`` with resolution = pixels per nm; origin_A: (x, y) in Å of the image's top-left
    corner, written as ImageJ's xorigin/yorigin (in pixels, so that ImageJ's coordinates are the
    source image's); info: JSON in ImageJ's Info property (Image > Show Info). Written via a
    temporary file and a rename.
    """
    import tifffile

    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ValueError(f"{path}: pixel size must be a positive number of Å, got {pixel_size_A!r}")
    px_nm = pixel_size_A / 10
    meta = {"unit": "nm", "xorigin": -origin_A[0] / pixel_size_A, "yorigin": -origin_A[1] / pixel_size_A}
    if info:
        meta["Info"] = json.dumps(dict(info), default=jsonable)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tifffile.imwrite(tmp, np.asarray(image, np.float32), imagej=True, resolution=(1 / px_nm, 1 / px_nm),
                     metadata=meta)
    os.replace(tmp, path)


def write_map_store(path: str | os.PathLike, maps: Mapping[str, Mapping[str, np.ndarray]],
                    extents_A: Mapping[str, tuple[float, float, float, float]],
                    attrs: Mapping | None = None) -> None:
    """One Zarr (v3) store holding every map with its calibrated axes.

    maps: group (e.g. the task) → name → map [rows, cols]; extents_A: group → (x0, x1, y1, y0) in Å
    of that group's maps (one grid per group). Layout: ``<group>/<name>`` arrays with dimension
    names (y, x) and attrs ``units`` (of the values, :data:`MAP_UNITS`) and ``axes``
    (:func:`map_axes_nm`); ``<group>/x``, ``<group>/y`` the pixel centres in nm (so xarray's
    ``open_zarr(path, group=...)`` gives a calibrated Dataset); `attrs` on the root. Written to
    ``<path>.partial`` and moved into place when complete.
    """
    import zarr

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.attrs.update({"array_convention": "<group>/<name>[row, col]; x = x.offset + col * x.scale (nm), "
                                           "y = y.offset + row * y.scale (nm): pixel centres",
                       **json.loads(json.dumps(dict(attrs or {}), default=jsonable))})
    for group, arrays in maps.items():
        g = root.create_group(group)
        g.attrs["extent_A"] = [float(v) for v in extents_A[group]]
        axes = None
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype == bool:
                arr = arr.astype(np.uint8)
            axes = map_axes_nm(arr.shape, extents_A[group])
            a = g.create_array(name, data=arr, dimension_names=("y", "x"))
            a.attrs.update({"units": MAP_UNITS.get(name, ""), "axes": axes})
        if axes is not None:
            for ax in axes:
                c = g.create_array(ax["name"], data=ax["offset"] + ax["scale"] * np.arange(ax["size"]),
                                   dimension_names=(ax["name"],))
                c.attrs["units"] = "nm"
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def read_tiff_pixel_size_A(path: str | os.PathLike) -> float | None:
    """Pixel size (Å) from a TIFF's resolution tags, or None when absent."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = page.tags
        if "XResolution" not in tags or "ResolutionUnit" not in tags:
            return None
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        per_unit = num / den
        if per_unit <= 0:
            return None
        cm_per_unit = {2: 2.54, 3: 1.0}.get(unit)
        if cm_per_unit is None:
            return None
        return cm_per_unit * 1e8 / per_unit


def open_loss_log(out_dir: str | os.PathLike, resume_at: int):
    """Append-mode CSV of a training run, kept in ``checkpoints/`` so that it survives Snakemake
    removing the job's outputs before a restart; rows after the resumed step are dropped.

    Returns the open file (positioned at its end; empty when a new header is needed).
    `publish_loss_log` copies it to ``losses.csv`` at the end.
    """
    path = Path(out_dir) / "checkpoints" / "losses.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = []
    if path.exists() and resume_at > 0:
        keep = _complete_rows(path.read_text(errors="replace").splitlines(keepends=True), resume_at)
    fh = open(path, "w", newline="")  # noqa: SIM115 - the caller closes it
    fh.writelines(keep)
    return fh


def _complete_rows(lines: list[str], resume_at: int) -> list[str]:
    """Header + the rows of steps 1..resume_at, in order. A process killed mid-write can leave a
    torn last line ("1" of "15,0.3,..."): only whole rows that continue the sequence are kept."""
    if not lines:
        return []
    header, keep, expected = lines[0], [lines[0]], 1
    n_fields = header.count(",") + 1
    for ln in lines[1:]:
        fields = ln.rstrip("\r\n").split(",")
        if not ln.endswith("\n") or len(fields) != n_fields:
            break
        try:
            step = float(fields[0])
        except ValueError:
            break
        if step != expected or step > resume_at:
            break
        keep.append(ln)
        expected += 1
    return keep


def write_json_atomic(path: str | os.PathLike, record: Mapping) -> None:
    """Write a JSON record via a temporary file and a rename: a killed job never leaves half a file.
    NumPy scalars and arrays are written as numbers and lists."""
    path = Path(path)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record, indent=1, default=jsonable))
    os.replace(tmp, path)


def jsonable(o):
    """`default=` of json.dumps: NumPy scalars and arrays as numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def publish_loss_log(out_dir: str | os.PathLike) -> None:
    """Copy the run's loss log from ``checkpoints/`` to ``losses.csv`` (the declared output)."""
    out = Path(out_dir)
    tmp = out / "losses.csv.partial"
    shutil.copyfile(out / "checkpoints" / "losses.csv", tmp)
    os.replace(tmp, out / "losses.csv")
