"""Stage 6, infer: one image of the sample sheet through the trained models: JSON record, maps, atomic models."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vdwstack.core.io import write_json_atomic
from vdwstack.infer.reading import infer_image
from vdwstack.infer.settings import InferenceSettings
from vdwstack.regress.model import Regressor
from vdwstack.structures.pixel_size import read_calibrated_image
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)


def tasks_of(task: str) -> list[str]:
    return ["slip", "twist"] if task == "both" else [task]


def infer_to_files(image_path: str | Path, image_id: str, material: str, layers: int, task: str,
                   sheet_pixel_size_A: float | None, models: Mapping[str, str | Path | None],
                   settings: Mapping | None, out_dir: str | Path, on_error: str = "record",
                   pixel_size_source: str = "sheet") -> dict:
    """Write `<out_dir>/result.json` (the networks' proposals) and `maps.npz` for one image.

    sheet_pixel_size_A: the user's pixel size (Å/px; None: the file's calibration, else the Bragg-spot
    estimate), recorded as `pixel_size_source` ("sheet" in the workflow, "user" for ``--pixel-size``).

    models: task → model folder (None when no model for this material was trained: the task's entry
    then says so, and the closed loop reads the image by its global search alone). With
    on_error="record" a failure is written as a record with status "error" (the run goes on and
    the report lists it); with "raise" it propagates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        record = _infer(image_path, image_id, material, layers, task, sheet_pixel_size_A, models,
                        InferenceSettings.from_mapping(settings), out, pixel_size_source)
    except Exception as e:
        if on_error != "record":
            raise
        msg = str(e) if str(image_path) in str(e) else f"{image_path}: {e}"
        log.error("%s", msg)
        log.debug(traceback.format_exc())
        record = {"image_id": image_id, "path": str(image_path), "material": material, "task": task,
                  "status": "error", "error": f"{type(e).__name__}: {msg}"}
        np.savez_compressed(out / "maps.npz")  # the declared output exists; it holds no maps
    write_json_atomic(out / "result.json", record)
    return record


def _infer(image_path, image_id, material, layers, task, sheet_p, models, settings, out: Path,
           user_source: str) -> dict:
    image, px = read_calibrated_image(image_path, material, sheet_p, user_source)
    p, source = px.pixel_size_A, px.source
    record = {"image_id": image_id, "path": str(image_path), "material": material, "layers": layers,
              "task": task, "status": "ok", "pixel_size_A": p, "pixel_size_source": source,
              "warnings": list(px.warnings), "results": {}}
    arrays = {"image": image}
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
        for k, v in res.maps.items():
            arrays[f"{t}_{k}"] = v
        arrays[f"{t}_domains"] = res.domain_labels
        arrays[f"{t}_boundaries"] = res.boundaries
    truth = read_truth(image_path)
    if truth:
        record["truth"] = truth
        nets = {t: r for t, r in record["results"].items() if r.get("model")}
        record["errors_vs_truth"] = symmetry_for(material).errors_vs_truth(nets, truth)
    np.savez_compressed(out / "maps.npz", **arrays)
    return record


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
