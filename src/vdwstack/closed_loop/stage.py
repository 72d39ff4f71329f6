"""Stage 7, closed_loop: the final reading of one image of the sample sheet (`reading.json`,
`comparison.png`, atomic models `model*.xyz|cif`).

Reads the infer stage's record (result.json: the networks' proposals, the pixel size) and maps
(maps.npz: the slip domains). Every reading — the whole image per task, the largest slip domains —
is the estimate of :func:`vdwstack.closed_loop.estimate.estimate_reading`: the candidate stacking that
reproduces the image best. `reading.json` is the one record per image that holds the answer (the
report and ``vdwstack infer`` read it): per task the final values with their 95 % interval, the
source, the hand and the agreement, the network's values beside them. The stage never fails the
run: a failed inference gives a "skipped" record, an image no stacking reproduces "no_match", a
failure of the fit "error", each with a message naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vdwstack.closed_loop.estimate import Estimate, estimate_reading
from vdwstack.closed_loop.figure import comparison_figure, message_figure
from vdwstack.closed_loop.record import estimate_record, reading_keys
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.core.images import read_image
from vdwstack.core.io import write_json_atomic
from vdwstack.core.microscope import fixed_microscope

log = logging.getLogger(__name__)

_NETWORK_KEYS = ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg", "uncertainty_A", "uncertainty_deg", "spread_A",
                 "spread_deg", "stacking", "mirrored", "hand", "alignment")


def domain_centres_A(slip_record: Mapping, labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """Centre (x, y) in Å of the map window nearest to each domain's centroid (a window that is
    surely inside the domain, also for non-convex ones)."""
    x0, _, _, y0 = slip_record["map_extent_A"]
    step = float(slip_record["map"]["stride_A"])
    out = {}
    for d in np.unique(labels[labels >= 0]):
        rows, cols = np.nonzero(labels == d)
        k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
        out[int(d)] = (x0 + (cols[k] + 0.5) * step, y0 + (rows[k] + 0.5) * step)
    return out


def _proposal(net: Mapping, keys: list[str]) -> dict | None:
    """The network's values (+ the hand it read them in, for chiral lattices), or None."""
    if not all(k in net for k in keys):
        return None
    return {**{k: net[k] for k in keys}, "mirrored": bool(net.get("mirrored", False))}


def _task_reading(image: np.ndarray, p: float, material: str, layers: int, task: str, net: Mapping,
                  labels: np.ndarray | None, s: ClosedLoopSettings, microscope: Mapping | None
                  ) -> tuple[dict, list[tuple[str, Estimate]]]:
    """The final reading of one task: whole image, then the largest slip domains (each its own
    estimate, in the whole image's hand and pose)."""
    keys = reading_keys(task == "twist", layers)
    whole = estimate_reading(image, p, material, layers, task, _proposal(net, keys), s, microscope)
    rec = estimate_record(whole)
    network = {k: net[k] for k in _NETWORK_KEYS if k in net}
    if network:
        rec["network"] = {**network, "model": net.get("model"), "n_crops": net.get("n_crops")}
    else:
        rec["network"] = None
        rec["warnings"].append(net.get("message") or f"no trained {task} model: the reading comes from the "
                                                     f"physics search alone")
    panels = [(f"{task}, whole image", whole)]
    domains = [dict(d) for d in net.get("domains", [])]
    if task == "slip" and whole.status == "ok" and len(domains) > 1 and labels is not None and labels.size:
        centres = domain_centres_A(net, labels)
        for dom in sorted(domains, key=lambda d: -d["n_windows"])[:s.max_domains]:
            if dom["id"] not in centres:
                continue
            est = estimate_reading(image, p, material, layers, task, _proposal(dom, keys), s, microscope,
                                   centre_A=centres[dom["id"]], context=whole)
            dom_rec = estimate_record(est)
            dom.update({f"network_{k}": dom.pop(k) for k in keys if k in dom})
            dom.update({k: v for k, v in dom_rec.items() if k not in ("crop", "simulations")})
            dom["centre_A"] = [round(c, 2) for c in centres[dom["id"]]]
            panels.append((f"{task}, domain {dom['id']}", est))
    rec["domains"] = domains
    for k in ("map", "map_extent_A", "n_domains", "twist_from_slip_map"):
        if k in net:
            rec[k] = net[k]
    return rec, panels


def closed_loop_record(image_path: str | Path, record: Mapping, maps_npz: str | Path | None,
                       settings: ClosedLoopSettings, microscope: Mapping | None = None
                       ) -> tuple[dict, list[tuple[str, Estimate]]]:
    """The final record of one image and the figure panels (label, estimate).

    microscope: the config's microscope block (values or [min, max] ranges, whose midpoint is used;
    defocus and source size are fitted): energy, aperture, Cs and detector angles of the model."""
    image, _ = read_image(image_path, signal=record.get("signal_requested"))  # the signal infer read
    labels = None
    if maps_npz is not None and "slip" in record["results"]:
        with np.load(maps_npz) as arr:
            labels = arr["slip_domains"] if "slip_domains" in arr.files else None
    p, material, layers = float(record["pixel_size_A"]), record["material"], int(record.get("layers", 2))
    out = {k: record[k] for k in ("image_id", "material", "layers", "task", "pixel_size_A", "pixel_size_source",
                                  "signal", "signal_requested", "n_signals", "calibration") if k in record}
    out.update(path=str(image_path), status="ok", results={}, warnings=list(record.get("warnings", [])),
               microscope=fixed_microscope(microscope),
               settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()})
    panels = []
    for task, net in tqdm(record["results"].items(), desc=f"reading {record['image_id']}", unit="task"):
        rec, pan = _task_reading(image, p, material, layers, task, net, labels, settings, microscope)
        log.info("%s %s: %s", record["image_id"], task, rec["verdict"])
        out["results"][task] = rec
        out["warnings"] += [f"{task}: {w}" for w in rec["warnings"]]
        panels += pan
    bad = [t for t, r in out["results"].items() if r["status"] != "ok"]
    if bad:
        out["status"] = "no_match"
        out["message"] = (f"{image_path}: no {material} stacking reproduces the image ({', '.join(bad)}: best "
                          f"agreement {min(out['results'][t]['agreement'] for t in bad):.2f} < "
                          f"{settings.min_agreement:.2f}); check the material, the pixel size and the image")
    truth = record.get("truth")
    if truth:
        out["truth"] = truth
        out["errors_vs_truth"] = _errors_vs_truth(material, out["results"], truth)
    return out, panels


def _errors_vs_truth(material: str, results: Mapping, truth: Mapping) -> dict:
    """Errors of the final and of the network's reading against a known truth (pseudo-experimental)."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(material)
    err = {}
    for task, rec in results.items():
        if rec.get("status") == "ok":
            err.update({f"final_{k}": round(v, 4) for k, v in sym.errors_vs_truth({task: rec}, truth).items()})
        if rec.get("network"):
            err.update({f"network_{k}": round(v, 4)
                        for k, v in sym.errors_vs_truth({task: rec["network"]}, truth).items()})
    return err


def write_models(out_dir: Path, record: Mapping) -> list[Path]:
    """Atomic models (.xyz, .cif) of the final readings: `model` for the whole image, `model_domain<k>`
    per domain; a mirrored reading gets the mirror-image model, which reproduces the image."""
    from ase.io import write

    from vdwstack.structures.geometry import reading_atoms

    res = record["results"]
    whole = {k: v for r in res.values() if r.get("status") == "ok"
             for k, v in r.items() if k in ("Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg")}
    if not whole:
        return []
    mirrored = bool(next((r["mirrored"] for r in res.values() if r.get("status") == "ok"), False))
    jobs = [("model", whole, mirrored)]
    for dom in res.get("slip", {}).get("domains", []):
        if dom.get("status") == "ok":
            jobs.append((f"model_domain{dom['id']}", {**whole, **{k: dom[k] for k in ("Da_A", "Db_A", "Da2_A", "Db2_A")
                                                                  if k in dom}}, bool(dom.get("mirrored"))))
    paths = []
    for stem, reading, mir in jobs:
        atoms = reading_atoms(record["material"], int(record["layers"]), reading, mirrored=mir)
        for suffix, fmt in ((".xyz", "extxyz"), (".cif", "cif")):
            path = out_dir / f"{stem}{suffix}"
            write(path, atoms, format=fmt)
            paths.append(path)
    return paths


def closed_loop_to_files(image_path: str | Path, result_json: str | Path, maps_npz: str | Path | None,
                         settings: Mapping | ClosedLoopSettings | None, out_dir: str | Path,
                         microscope: Mapping | None = None) -> dict:
    """Write `<out_dir>/reading.json`, `comparison.png` and the atomic models for one image; never
    raises for a bad image or a failed inference (status "skipped", "no_match" or "error", the
    message names the file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = {"path": str(image_path), "result": str(result_json)}
    panels: list = []
    try:
        s = settings if isinstance(settings, ClosedLoopSettings) else ClosedLoopSettings.from_mapping(settings)
        try:
            record = json.loads(Path(result_json).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{result_json}: cannot read the inference record ({e})") from None
        base.update({k: record.get(k) for k in ("image_id", "material", "layers", "task")})
        if record.get("status") != "ok":
            final = {**base, "status": "skipped",
                     "message": f"{image_path}: inference failed ({record.get('error', 'no error given')}), "
                                f"see {result_json}: nothing to read"}
        elif not record.get("results"):
            final = {**base, "status": "skipped", "message": f"{image_path}: {result_json} holds no task"}
        else:
            final, panels = closed_loop_record(image_path, record, maps_npz, s, microscope)
            final["result"] = str(result_json)
            final["models"] = [p.name for p in write_models(out, final)]
    except Exception as e:  # noqa: BLE001 — any failure becomes the image's error record
        msg = str(e) if str(image_path) in str(e) or str(result_json) in str(e) else f"{image_path}: {e}"
        log.error("%s", msg)
        log.debug(traceback.format_exc())
        final = {**base, "status": "error", "error": f"{type(e).__name__}: {msg}"}
        panels = []
    if final["status"] != "ok":
        log.warning("%s", final.get("message") or final.get("error"))
    tmp = out / "comparison.partial.png"
    if panels:
        comparison_figure(panels, tmp, f"{final['image_id']} ({final['material']}): final readings")
    else:  # the declared output exists and says why there is no comparison
        message_figure(tmp, f"no reading ({final['status']}):\n{final.get('message') or final.get('error')}")
    os.replace(tmp, out / "comparison.png")
    write_json_atomic(out / "reading.json", final)
    return final
