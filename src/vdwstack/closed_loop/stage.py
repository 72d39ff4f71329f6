"""Stage 7, closed_loop: one image of the sample sheet through the closed-loop check (`check.json`, `comparison.png`).

Reads the infer stage's record (result.json) and maps (maps.npz), checks the whole-image reading
and the largest slip domains (crops centred on each domain), and never fails the run: an image
whose inference failed gives a "skipped" record, a failure of the check itself an "error" record,
both naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vdwstack.closed_loop.check import CheckResult, check_reading
from vdwstack.closed_loop.figure import comparison_figure
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.core.images import read_image
from vdwstack.core.microscope import fixed_microscope
from vdwstack.core.io import write_json_atomic

log = logging.getLogger(__name__)

_SLIP_KEYS = ("Da_A", "Db_A", "Da2_A", "Db2_A")


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


def _checks(image: np.ndarray, record: Mapping, labels: np.ndarray | None, settings: ClosedLoopSettings,
            microscope: Mapping | None = None) -> list[tuple[str, str, CheckResult]]:
    """(task, region name, result) for the whole image of every task and the largest slip domains."""
    p = float(record["pixel_size_A"])
    material, layers = record["material"], int(record.get("layers", 2))
    jobs = []
    for task, res in record["results"].items():
        if task == "slip":
            reading = {k: res[k] for k in _SLIP_KEYS if k in res}
            unc = max(float(res.get("uncertainty_A", 0.0)), 0.0)
        else:
            reading = {"theta_deg": res["theta_deg"]}
            unc = max(float(res.get("uncertainty_deg", 0.0)), 0.0)
        jobs.append((task, "whole image", reading, None, unc))
        domains = res.get("domains", []) if task == "slip" else []
        if len(domains) > 1 and labels is not None and labels.size:
            centres = domain_centres_A(res, labels)
            for dom in sorted(domains, key=lambda d: -d["n_windows"])[:settings.max_domains]:
                if dom["id"] in centres:
                    dr = {**reading, **{k: dom[k] for k in _SLIP_KEYS if k in dom}}
                    jobs.append((task, f"domain {dom['id']}", dr, centres[dom["id"]],
                                 float(dom.get("spread_A", 0.0))))
    out = []
    for task, region, reading, centre, unc in tqdm(jobs, desc=f"closed loop {record['image_id']}", unit="check"):
        res = check_reading(image, p, material, layers, reading, task, settings, centre, unc, region, microscope)
        log.info("%s %s: agreement %.3f%s%s", task, region, res.reading.agreement,
                 f", refined {res.refined.agreement:.3f}" if res.refined is not None else "",
                 f", best alternative {res.alternative.agreement:.3f}" if res.alternative is not None else "")
        out.append((task, region, res))
    return out


def closed_loop_record(image_path: str | Path, record: Mapping, maps_npz: str | Path | None,
                       settings: ClosedLoopSettings, microscope: Mapping | None = None
                       ) -> tuple[dict, list[tuple[str, CheckResult]]]:
    """The check record of one image (status "ok") and the figure panels.

    microscope: the config's microscope block (values or [min, max] ranges, whose midpoint is used;
    defocus and source size are fitted): energy, aperture, Cs and detector angles of the model."""
    image, _ = read_image(image_path)
    labels = None
    if maps_npz is not None and "slip" in record["results"]:
        with np.load(maps_npz) as arr:
            labels = arr["slip_domains"] if "slip_domains" in arr else None
    checks = _checks(image, record, labels, settings, microscope)
    out = {"image_id": record["image_id"], "path": str(image_path), "material": record["material"],
           "layers": int(record.get("layers", 2)), "status": "ok", "pixel_size_A": float(record["pixel_size_A"]),
           "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
           "microscope": fixed_microscope(microscope),
           "checks": [], "warnings": []}
    for task, region, res in checks:
        rec = {"task": task, "region": region, **res.to_record()}
        out["checks"].append(rec)
        out["warnings"] += rec["warnings"]
        if region == "whole image":
            # Flags of the whole-image reading at the top level (the report's columns).
            out[f"{task}_agreement"] = rec["agreement"]
            if "refined" in rec:
                out[f"{task}_refined_agreement"] = rec["refined_agreement"]
                out.update({f"refined_{k}": v for k, v in rec["refined"].items()})
                unit = "deg" if task == "twist" else "A"
                out[f"change_{unit}"] = rec[f"change_{unit}"]
            if "alternative" in rec:
                # The global search's best stacking, beside (never instead of) the reading.
                out.setdefault("alternative", {})[task] = {k: v for k, v in rec["alternative"].items() if k != "fit"}
    out["agreement"] = min(c["agreement"] for c in out["checks"] if c["region"] == "whole image")
    truth = record.get("truth")
    if truth:
        out["errors_vs_truth"] = _errors_vs_truth(record["material"], out, truth)
    panels = []
    for task, region, res in checks:
        panels.append((f"{task} {region}", res))
        if res.fits_better:  # what would fit: the global search's stacking, in its own row
            panels.append((f"{task} {region}, alternative", replace(res, refined=res.alternative)))
    return out, panels


def _errors_vs_truth(material: str, out: Mapping, truth: Mapping) -> dict:
    """Errors of the reading and of the refined reading against a pseudo-experimental truth."""
    from vdwstack.structures.symmetry import symmetry_for

    sym = symmetry_for(material)
    err = {}
    for c in out["checks"]:
        if c["region"] != "whole image":
            continue
        for name in ("reading", "refined"):
            for key, value in sym.errors_vs_truth({c["task"]: c.get(name)}, truth).items():
                err[f"{name}_{key}"] = round(value, 4)
    return err


def closed_loop_to_files(image_path: str | Path, result_json: str | Path, maps_npz: str | Path | None,
                         settings: Mapping | ClosedLoopSettings | None, out_dir: str | Path,
                         microscope: Mapping | None = None) -> dict:
    """Write `<out_dir>/check.json` and `<out_dir>/comparison.png` for one image; never raises for a
    bad image or a failed inference (status "skipped" or "error", the message names the file)."""
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
        base.update(image_id=record.get("image_id"), material=record.get("material"))
        if record.get("status") != "ok":
            check = {**base, "status": "skipped",
                     "message": f"{image_path}: inference failed ({record.get('error', 'no error given')}), "
                                f"see {result_json}: nothing to check"}
        elif not record.get("results"):
            check = {**base, "status": "skipped", "message": f"{image_path}: {result_json} holds no reading"}
        else:
            check, panels = closed_loop_record(image_path, record, maps_npz, s, microscope)
            check["result"] = str(result_json)
    except Exception as e:
        msg = str(e) if str(image_path) in str(e) or str(result_json) in str(e) else f"{image_path}: {e}"
        log.error("%s", msg)
        log.debug(traceback.format_exc())
        check = {**base, "status": "error", "error": f"{type(e).__name__}: {msg}"}
        panels = []
    if check["status"] != "ok":
        log.warning("%s", check.get("message") or check.get("error"))
    _write_figure(out / "comparison.png", panels, check)
    write_json_atomic(out / "check.json", check)
    return check


def _write_figure(path: Path, panels, check: Mapping) -> None:
    tmp = path.with_name(path.stem + ".partial.png")
    if panels:
        title = f"{check['image_id']} ({check['material']}): closed-loop check"
        comparison_figure(panels, tmp, title)
    else:  # the declared output exists and says why there is no comparison
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no closed-loop check ({check['status']}):\n"
                          f"{check.get('message') or check.get('error')}"[:300],
                ha="center", va="center", wrap=True, fontsize=8)
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
    os.replace(tmp, path)

