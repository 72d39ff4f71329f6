"""Stage 6, infer: one image of the sample sheet through the trained models: JSON record and maps.

Outputs in the image's folder: ``result.json`` (the networks' proposals, the pixel size and which
signal of the file was read), ``maps.npz`` (the image and every map: ``{task}_{name}``,
``{task}_domains``, ``{task}_boundaries``), and the same maps for other programs: ``maps/`` (one
float32 TIFF per map, ``{task}_{name}.tif``, calibrated in nm for ImageJ/Fiji: its pixel is the
map's stride) and ``maps.zarr`` (every map with its axes in nm, one group per task).
"""

from __future__ import annotations

import logging
import os
import shutil
import traceback
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vdwstack.core.io import MAP_UNITS, write_imagej_tiff, write_json_atomic, write_map_store
from vdwstack.infer.reading import infer_image
from vdwstack.infer.settings import InferenceSettings
from vdwstack.regress.model import Regressor
from vdwstack.structures.pixel_size import load_calibrated_image
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)


def tasks_of(task: str) -> list[str]:
    return ["slip", "twist"] if task == "both" else [task]


def infer_to_files(image_path: str | Path, image_id: str, material: str, layers: int, task: str,
                   sheet_pixel_size_A: float | None, models: Mapping[str, str | Path | None],
                   settings: Mapping | None, out_dir: str | Path, on_error: str = "record",
                   pixel_size_source: str = "sheet", signal: str | None = None) -> dict:
    """Write `<out_dir>/result.json` (the networks' proposals), `maps.npz`, `maps/` (a calibrated
    TIFF per map) and `maps.zarr` (all maps with their axes) for one image.

    sheet_pixel_size_A: the user's pixel size (Å/px; None: the file's calibration, else the Bragg-spot
    estimate), recorded as `pixel_size_source` ("sheet" in the workflow, "user" for ``--pixel-size``).

    signal: which signal of a multi-signal file to read (a title, case-insensitive, or an index as a
    string; None or "": the HAADF/ADF image, :func:`vdwstack.core.images.load_image`). The record
    keeps it as `signal_requested` (the closed loop reads the image again with it) and the title
    actually read as `signal`.

    models: task → model folder (None when no model for this material was trained: the task's entry
    then says so, and the closed loop reads the image by its global search alone). With
    on_error="record" a failure is written as a record with status "error" (the run goes on and
    the report lists it); with "raise" it propagates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        record = _infer(image_path, image_id, material, layers, task, sheet_pixel_size_A, models,
                        InferenceSettings.from_mapping(settings), out, pixel_size_source, signal or None)
    except Exception as e:
        if on_error != "record":
            raise
        msg = str(e) if str(image_path) in str(e) else f"{image_path}: {e}"
        log.error("%s", msg)
        log.debug(traceback.format_exc())
        record = {"image_id": image_id, "path": str(image_path), "material": material, "task": task,
                  "status": "error", "error": f"{type(e).__name__}: {msg}", "signal_requested": signal or None}
        # The declared outputs exist; they hold no maps.
        np.savez_compressed(out / "maps.npz")
        write_map_files(out, {}, {}, {"image_id": image_id, "status": "error"})
    write_json_atomic(out / "result.json", record)
    return record


def _infer(image_path, image_id, material, layers, task, sheet_p, models, settings, out: Path,
           user_source: str, signal: str | None) -> dict:
    loaded, px = load_calibrated_image(image_path, material, sheet_p, user_source, signal)
    image = loaded.data
    p, source = px.pixel_size_A, px.source
    record = {"image_id": image_id, "path": str(image_path), "material": material, "layers": layers,
              "task": task, "status": "ok", "pixel_size_A": p, "pixel_size_source": source,
              "file_pixel_size_A": loaded.pixel_size_A, "calibration": loaded.calibration,
              "signal": loaded.signal, "signal_requested": signal, "n_signals": loaded.n_signals,
              "warnings": list(px.warnings), "results": {}}
    if loaded.n_signals > 1:
        log.info("%s: read signal %r of %d", image_path, loaded.signal, loaded.n_signals)
    task_maps: dict[str, dict[str, np.ndarray]] = {}
    extents: dict[str, tuple[float, float, float, float]] = {}
    for t in tasks_of(task):
        model_dir = models.get(t)
        if not model_dir:
            # No network for this material: the closed loop reads the image by its global search alone.
            record["results"][t] = {"task": t, "model": None,
                                    "message": f"no trained {t} model for {layers}-layer {material}: the reading "
                                               f"comes from the physics search alone"}
            continue
        reg = Regressor(model_dir)
        if reg.codec.material != material:
            raise ValueError(f"{image_path}: the {t} model is for {reg.codec.material}, the image is {material}")
        if t == "slip" and reg.codec.layers != layers:
            raise ValueError(f"{image_path}: the slip model predicts {reg.codec.layers}-layer stacks, "
                             f"the sheet says {layers} layers")
        res = infer_image(image, p, reg, settings, image_id, source)
        rec = res.record
        rec["maps"] = {k: np.round(v, 4).tolist() for k, v in res.maps.items()}
        rec["map_extent_A"] = list(map(float, res.map_extent_A))
        record["results"][t] = rec
        task_maps[t] = {**res.maps, "domains": res.domain_labels, "boundaries": res.boundaries}
        extents[t] = tuple(map(float, res.map_extent_A))
    truth = read_truth(image_path)
    if truth:
        record["truth"] = truth
        nets = {t: r for t, r in record["results"].items() if r.get("model")}
        record["errors_vs_truth"] = symmetry_for(material).errors_vs_truth(nets, truth)
    np.savez_compressed(out / "maps.npz", image=image,
                        **{f"{t}_{k}": v for t, named in task_maps.items() for k, v in named.items()})
    write_map_files(out, task_maps, extents, {"image_id": image_id, "path": str(image_path), "material": material,
                                              "pixel_size_A": p, "signal": loaded.signal})
    return record


def write_map_files(out_dir: str | Path, task_maps: Mapping[str, Mapping[str, np.ndarray]],
                    extents_A: Mapping[str, tuple[float, float, float, float]], attrs: Mapping) -> None:
    """`<out_dir>/maps/<task>_<name>.tif` (float32, ImageJ calibration in nm: the pixel is the map's
    stride, the origin its top-left corner in the image) and `<out_dir>/maps.zarr` (every map with
    its axes, :func:`vdwstack.core.io.write_map_store`).

    task_maps: task → name → map [rows, cols] (values, domain ids, boundary flags); extents_A: task →
    (x0, x1, y1, y0) in Å of the maps' outer edges (the record's `map_extent_A`). Both outputs
    replace earlier ones whole (written beside them, then renamed), so a rerun into the same
    folder leaves no map of a task no longer read.
    """
    out = Path(out_dir)
    tmp = out / "maps.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for t, named in task_maps.items():
        x0, x1, _, y0 = extents_A[t]
        for name, arr in named.items():
            step_A = (x1 - x0) / arr.shape[1]
            write_imagej_tiff(tmp / f"{t}_{name}.tif", np.asarray(arr, np.float32), step_A, (x0, y0),
                              {**dict(attrs), "task": t, "map": name, "units": MAP_UNITS.get(name, ""),
                               "extent_A": list(extents_A[t])})
    if (out / "maps").exists():
        shutil.rmtree(out / "maps")
    os.replace(tmp, out / "maps")
    write_map_store(out / "maps.zarr", task_maps, extents_A, attrs)


def read_truth(path: str | Path) -> dict | None:
    """The known truth stored by the pipeline in a pseudo-experimental TIFF (None otherwise)."""
    import json

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tf:
        desc = tf.pages[0].description or ""
    try:
        meta = json.loads(desc)
    except json.JSONDecodeError:
        return None
    return meta.get("truth") if isinstance(meta, dict) else None
