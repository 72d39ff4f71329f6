"""Stage 6, infer: one image of the sample sheet through the trained models: JSON record, maps, atomic models."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vdwstack.infer.reading import infer_image
from vdwstack.infer.settings import InferenceSettings
from vdwstack.core.io import write_json_atomic
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
    """Write `<out_dir>/result.json` (+ `maps.npz`, `model_*.xyz|cif`) for one image.

    sheet_pixel_size_A: the user's pixel size (Å/px; None: the file's calibration, else the Bragg-spot
    estimate), recorded as `pixel_size_source` ("sheet" in the workflow, "user" for ``--pixel-size``).

    models: task → model folder (None when no model for this material was trained). With
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
            raise ValueError(f"{image_path}: no trained {t} model for {material} (add one to regress in the config)")
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
    # Atomic model of the whole-image estimate (and of every slip domain).
    est = {}
    for t, rec in record["results"].items():
        est.update({k: rec[k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg") if k in rec})
    _write_models(out / "model", material, layers, est)
    for dom in record["results"].get("slip", {}).get("domains", []):
        _write_models(out / f"model_domain{dom['id']}", material, layers, {**est, **{k: dom[k] for k in ("Da_A", "Db_A") if k in dom}})
    truth = read_truth(image_path)
    if truth:
        record["truth"] = truth
        record["errors_vs_truth"] = symmetry_for(material).errors_vs_truth(record["results"], truth)
    np.savez_compressed(out / "maps.npz", **arrays)
    return record


def _write_models(stem: Path, material: str, layers: int, est: Mapping) -> None:
    from ase.io import write

    atoms = atomic_model(material, layers, est)
    atoms.info.update({k: float(v) for k, v in est.items()})
    write(stem.with_suffix(".xyz"), atoms, format="extxyz")
    write(stem.with_suffix(".cif"), atoms, format="cif")


def atomic_model(material: str, layers: int, estimate: Mapping, size_A: float = 30.0):
    """ASE Atoms of the inferred stacking over a size_A × size_A patch (lattice frame)."""
    from vdwstack.structures.geometry import StackGeometry, build_stack

    row = {"material": material, "layers": layers, "Da_A": estimate.get("Da_A", 0.0), "Db_A": estimate.get("Db_A", 0.0),
           "Da2_A": estimate.get("Da2_A", 0.0), "Db2_A": estimate.get("Db2_A", 0.0),
           "theta_deg": estimate.get("theta_deg", 0.0), "rotation_deg": 0.0}
    return build_stack(StackGeometry.from_row(row), (0.0, size_A, 0.0, size_A))


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
