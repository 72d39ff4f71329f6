"""The Python API for notebooks: the stacking of one image in one call.

    import vdwstack as vs
    r = vs.read_stacking("image.dm4", material="ReS2", task="slip", models="results/models")
    r.values, r.uncertainty, r.hand, r.agreement      # the final reading
    r.to_dict(); r.plot(); r.atoms()

:func:`read_stacking` runs the same two steps as the workflow's ``infer`` and ``closed_loop`` rules
(:func:`vdwstack.infer.stage.infer_to_files`, :func:`vdwstack.closed_loop.stage.closed_loop_to_files`)
into one folder, so a reading made in a notebook is the reading the workflow makes. A numpy array
or a HyperSpy ``Signal2D`` is first written to ``<folder>/input.tif`` with its pixel size in the
resolution tags: the folder then holds the analysed image beside its reading, and both steps read
it as they read any calibrated file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vdwstack.regress.model import find_model
from vdwstack.result import StackingResult, TaskReading
from vdwstack.structures.materials import get_material

__all__ = ["StackingResult", "TaskReading", "read_stacking", "simulate_image"]

TASKS = ("slip", "twist", "both")


# --- inputs --------------------------------------------------------------------------------------
def _signal2d_image(sig) -> tuple[np.ndarray, float | None]:
    """Data and pixel size (Å) of a HyperSpy Signal2D (duck-typed: ``.data``, ``.axes_manager``)."""
    from vdwstack.core.images import unit_to_A

    data = np.asarray(sig.data)
    if data.ndim != 2:
        raise ValueError(f"Signal2D {getattr(sig.metadata.General, 'title', '')!r}: expected one 2-D image, got "
                         f"data of shape {data.shape} (pick one frame, e.g. s.inav[0])")
    axes = sig.axes_manager.signal_axes
    scales = [float(a.scale) for a in axes]
    units = [str(a.units) for a in axes]
    factor = unit_to_A(units[0], path=f"Signal2D axis {axes[0].name!r}")
    if factor is None:
        return data, None
    if len(set(units)) > 1 or abs(scales[0] - scales[1]) > 1e-3 * abs(scales[0]):
        raise ValueError(f"Signal2D: non-square pixels ({scales[0]:g} {units[0]} × {scales[1]:g} {units[1]}); "
                         f"resample to square pixels first")
    return data, scales[0] * factor


def _write_input_tiff(path: Path, data: np.ndarray, pixel_size_A: float | None, where: str) -> None:
    import tifffile

    from vdwstack.core.io import write_tiff

    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D image array, got shape {arr.shape}")
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{where}: expected real numbers, got dtype {arr.dtype}")
    if pixel_size_A is None:
        tifffile.imwrite(path, arr.astype(np.float32))
    else:
        write_tiff(path, arr, float(pixel_size_A), {"source": where})


def _models_for(models, tasks: list[str], material: str, layers: int) -> dict[str, Path | None]:
    if models is None:
        return {t: None for t in tasks}
    if isinstance(models, Mapping):
        unknown = set(models) - {"slip", "twist"}
        if unknown:
            raise ValueError(f"models: unknown task(s) {sorted(unknown)} (allowed: slip, twist)")
        return {t: (Path(models[t]) if models.get(t) else None) for t in tasks}
    root = Path(models)
    if not root.is_dir():
        raise FileNotFoundError(f"models: {root} is not a folder (give results/models of a workflow run, "
                                f"one model folder, a mapping task → folder, or None)")
    return {t: find_model(root, t, material, layers) for t in tasks}


def read_stacking(data: str | os.PathLike | np.ndarray | Any, material: str, task: str = "slip",
                  pixel_size_A: float | None = None, models: str | os.PathLike | Mapping | None = None,
                  *, layers: int = 2, signal: str | None = None, out: str | os.PathLike | None = None,
                  infer: Mapping | None = None, closed_loop: Mapping | None = None,
                  microscope: Mapping | None = None) -> StackingResult:
    """Read the stacking of one ADF-STEM image: the stacking that reproduces it best.

    Args:
        data: a path (TIFF, PNG/JPEG, DM3/DM4, EMD, SER, MRC, .hspy, .zspy), a numpy array [H, W]
            (give `pixel_size_A`, or it is estimated from the Bragg spots) or a HyperSpy Signal2D
            (pixel size from its calibrated signal axes).
        material: monolayer material (e.g. "ReS2", "MoS2"; see ``resources/materials.tsv``).
        task: "slip", "twist" or "both".
        pixel_size_A: Å/px; wins over the file's calibration (a warning when they differ by > 2 %).
        models: ``results/models`` of a workflow run, one model folder, a mapping task → model
            folder, or None (the default: no network, the reading comes from the physics search
            alone, slower and without maps). A
            missing model for the material is allowed (search alone); a missing folder is an error.
        layers: 2 or 3.
        signal: for files with several signals (e.g. HAADF, DF, BF in a Velox EMD): the title or
            index of the one to read; default the HAADF/ADF one.
        out: folder for the reading, maps, comparison figure and atomic models (default: a new
            temporary folder, see ``result.folder``).
        infer, closed_loop, microscope: settings blocks as in the workflow's config
            (``infer:``, ``closed_loop:``, ``microscope:``), key by key over the defaults.

    Returns:
        :class:`StackingResult`. An image no stacking reproduces gives status "no_match" (no values,
        a message); an unreadable image raises ValueError naming the file.
    """
    from vdwstack.closed_loop.stage import closed_loop_to_files
    from vdwstack.infer.stage import infer_to_files, tasks_of

    if task not in TASKS:
        raise ValueError(f"task: {task!r} is not allowed (allowed: {', '.join(TASKS)})")
    if layers not in (2, 3):
        raise ValueError(f"layers: {layers!r} is not allowed (allowed: 2, 3)")
    if pixel_size_A is not None and not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ValueError(f"pixel_size_A: must be a positive number of Å per pixel, got {pixel_size_A!r}")
    get_material(material)  # unknown material: ValueError listing the known ones
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="vdwstack_"))
    folder.mkdir(parents=True, exist_ok=True)
    source = "user"
    if isinstance(data, (str, os.PathLike)):
        path, image_id = Path(data), Path(data).stem
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such image file")
    elif hasattr(data, "axes_manager") and hasattr(data, "data"):
        arr, sig_p = _signal2d_image(data)
        image_id = str(getattr(data.metadata.General, "title", "") or "signal2d")
        path = folder / "input.tif"
        _write_input_tiff(path, arr, sig_p, f"Signal2D {image_id!r}")
    elif isinstance(data, np.ndarray):
        image_id, path = "array", folder / "input.tif"
        _write_input_tiff(path, data, pixel_size_A, "array")
    else:
        raise TypeError(f"data: expected a path, a numpy array or a HyperSpy Signal2D, got {type(data).__name__}")
    chosen = _models_for(models, tasks_of(task), material, layers)
    infer_to_files(path, image_id, material, layers, task, pixel_size_A, chosen, infer, folder,
                   on_error="raise", pixel_size_source=source, signal=signal)
    record = closed_loop_to_files(path, folder / "result.json", folder / "maps.npz", closed_loop, folder,
                                  microscope)
    if record["status"] == "error":
        raise ValueError(record.get("error"))
    return StackingResult.open(folder)


def simulate_image(material: str, slip_A: tuple[float, float] = (0.0, 0.0), twist_deg: float = 0.0,
                   pixel_size_A: float = 0.1, size_px: int = 256, *, layers: int = 2,
                   slip2_A: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0, seed: int = 0,
                   microscope: Mapping | None = None) -> np.ndarray:
    """A clean ADF-STEM image (float32 [size_px, size_px]) of one stacking, as the workflow
    simulates its training data (incoherent model, :mod:`vdwstack.simulate.render`).

    slip_A: (Da, Db) of layer 2 over layer 1 in Å along â, b̂; slip2_A: layer 3 over layer 2
    (trilayers); twist_deg: twist of layer 2; rotation_deg: in-plane rotation of the whole stack;
    microscope: Optics fields (energy_eV, semiangle_mrad, defocus_A, ...) over the defaults.
    """
    from vdwstack.simulate.render import simulate_row, stacking_row

    row = stacking_row(material, layers=layers, slip_A=slip_A, slip2_A=slip2_A, twist_deg=twist_deg,
                       rotation_deg=rotation_deg, pixel_size_A=pixel_size_A, size_px=size_px, seed=seed,
                       microscope=microscope)
    return simulate_row(row)
