"""Enumerate the stackings of a dataset into a table: one row per sample, with its seed.

A row holds everything needed to rebuild the sample's atoms (:class:`StackGeometry`) and its
optics (:class:`Optics`), plus the image grid (pixel size, shape). Random draws (realism,
microscope ranges, orientation) come from a per-sample seed derived from the global seed, the
dataset name and the sample index, so the same config always gives the same table.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from vdwstack.core.errors import ConfigError
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS, Optics
from vdwstack.core.settings import setting
from vdwstack.structures.materials import MATERIALS, get_material
from vdwstack.structures.symmetry import symmetry_for

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Realism:
    """Per-sample realism of the structures (the config's ``realism`` block; a value or [min, max]).

    vacancy_fraction: chalcogen vacancies; metal_vacancy_fraction: metal vacancies (fractions);
    displacement_rms_A: static disorder (Å), on top of the simulator's thermal blur;
    interlayer_jitter_A: uniform jitter of each interlayer distance (± Å);
    strain_max: largest in-plane strain component (uniform ±); random_rotation: random in-plane
    rotation of each sample (else 0°).
    """

    vacancy_fraction: float | tuple[float, float] = setting(0.0, "chalcogen vacancies (fraction)")
    metal_vacancy_fraction: float | tuple[float, float] = setting(0.0, "metal vacancies (fraction)")
    displacement_rms_A: float | tuple[float, float] = setting(0.0, "static disorder (Å); thermal vibration "
                                                                   "is the simulator's blur")
    interlayer_jitter_A: float = setting(0.0, "uniform jitter of each interlayer distance (± Å)", minimum=0)
    strain_max: float = setting(0.0, "largest in-plane strain component (uniform ±)", minimum=0, maximum=0.1)
    random_rotation: bool = setting(False, "random in-plane rotation of each sample")


REALISM_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Realism)}

COLUMNS = [
    "sample_id", "dataset", "material", "layers", "Da_A", "Db_A", "Da2_A", "Db2_A", "theta_deg",
    "rotation_deg", "origin_x_A", "origin_y_A", "interlayer_A", "interlayer2_A",
    "strain_xx", "strain_yy", "strain_xy", "vacancy_fraction", "metal_vacancy_fraction",
    "displacement_rms_A", *MICROSCOPE_DEFAULTS, "pixel_size_A", "height_px", "width_px",
    "moire_period_A", "seed",
]


def _draw(rng: np.random.Generator, value, field: str) -> float:
    """A fixed number or a uniform draw from [min, max]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not value[0] <= value[1]:
            raise ConfigError(f"{field}: a range must be [min, max] with min ≤ max, got {value!r}")
        return float(rng.uniform(value[0], value[1])) if value[1] > value[0] else float(value[0])
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: expected a number or [min, max], got {value!r}") from None


def _twist_list(spec, field: str) -> list[float]:
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        try:
            start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
        except KeyError as e:
            raise ConfigError(f"{field}: needs start, stop and step (missing {e})") from None
        if step <= 0:
            raise ConfigError(f"{field}.step must be > 0, got {step}")
        return list(np.round(np.arange(start, stop + step / 2, step), 9))
    return [float(t) for t in spec]


def sample_seed(seed: int, dataset: str, index: int) -> int:
    """Per-sample seed, stable across Python versions and platforms."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(dataset.encode())], spawn_key=(int(index),))
    return int(ss.generate_state(1, np.uint32)[0])


def enumerate_dataset(name: str, spec: Mapping, seed: int, microscope: Mapping | None = None,
                      realism: Mapping | None = None) -> pd.DataFrame:
    """Table of samples for one dataset of the config.

    Args:
        name: dataset name (used in sample ids and seeds).
        spec: the dataset's config block: material, layers, slip_step_A and/or twist_deg,
            samples_per_stacking, pixel_size_A, image_size_px, optional microscope/realism overrides.
        seed: global seed.
        microscope, realism: global defaults (values or [min, max] ranges); the dataset's own
            blocks override them key by key.

    Raises:
        ConfigError naming ``datasets.<name>.<field>`` for bad values.
    """
    f = f"datasets.{name}"
    grid = _image_grid(f, spec)
    mic = _merged(f"{f}.microscope", MICROSCOPE_DEFAULTS, microscope, spec.get("microscope"))
    rea = _merged(f"{f}.realism", REALISM_DEFAULTS, realism, spec.get("realism"))
    stackings = _stackings(f, spec, grid["layers"])
    n_per = grid.pop("samples_per_stacking")
    rows = []
    for da, db, theta, random_slip in (s for s in stackings for _ in range(n_per)):
        rows.append(_sample_row(name, len(rows), seed, da, db, theta, random_slip, grid, mic, rea))
    try:  # optics ranges are checked once per dataset, on the first row
        Optics.from_mapping(rows[0])
    except ValueError as e:
        raise ConfigError(f"{f}.microscope: {e}") from None
    table = pd.DataFrame(rows, columns=COLUMNS)
    fov_A = min(grid["height_px"], grid["width_px"]) * grid["pixel_size_A"]
    small = (table["theta_deg"] != 0) & (table["moire_period_A"] > fov_A)
    if small.any():
        log.warning("%s: %d twisted samples have a moiré period larger than the %.1f Å field of view",
                    name, int(small.sum()), fov_A)
    return table


def _image_grid(f: str, spec: Mapping) -> dict:
    """Material, layers, pixel size (Å/px), image shape (px) and samples per stacking, checked."""
    material = spec.get("material")
    if material not in MATERIALS:
        raise ConfigError(f"{f}.material: unknown material {material!r}; supported: {', '.join(sorted(MATERIALS))}")
    layers = int(spec.get("layers", 2))
    if layers not in (2, 3):
        raise ConfigError(f"{f}.layers must be 2 or 3, got {layers}")
    pixel_size_A = float(spec.get("pixel_size_A", 0.1))
    if not pixel_size_A > 0:
        raise ConfigError(f"{f}.pixel_size_A must be > 0, got {pixel_size_A}")
    size = spec.get("image_size_px", 256)
    height_px, width_px = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(height_px, width_px) < 16:
        raise ConfigError(f"{f}.image_size_px must be ≥ 16, got {size}")
    n_per = int(spec.get("samples_per_stacking", 1))
    if n_per < 1:
        raise ConfigError(f"{f}.samples_per_stacking must be ≥ 1, got {n_per}")
    return {"material": material, "layers": layers, "pixel_size_A": pixel_size_A, "height_px": height_px,
            "width_px": width_px, "samples_per_stacking": n_per}


def _merged(field: str, defaults: Mapping, common: Mapping | None, own: Mapping | None) -> dict:
    """Defaults < the config's global block < the dataset's own block, key by key."""
    out = {**defaults, **dict(common or {}), **dict(own or {})}
    unknown = set(out) - set(defaults)
    if unknown:
        raise ConfigError(f"{field}: unknown setting(s) {sorted(unknown)}")
    return out


def _stackings(f: str, spec: Mapping, layers: int) -> list[tuple[float, float, float, bool]]:
    """(Da, Db, θ, random slip) of every distinct stacking: the slip grid, then the twists."""
    sym = symmetry_for(spec["material"])
    stackings: list[tuple[float, float, float, bool]] = []
    if "slip_step_A" in spec and spec["slip_step_A"] is not None:
        step = spec["slip_step_A"]
        try:
            step = float(step)
        except (TypeError, ValueError):
            raise ConfigError(f"{f}.slip_step_A must be a number, got {step!r}") from None
        if not step > 0:
            raise ConfigError(f"{f}.slip_step_A must be > 0 Å, got {step}")
        da, db = sym.slip_grid(step)
        if len(da) == 0:
            raise ConfigError(f"{f}.slip_step_A={step} gives an empty slip grid")
        stackings += [(float(a), float(b), 0.0, False) for a, b in zip(da, db)]
    twists = _twist_list(spec.get("twist_deg"), f"{f}.twist_deg")
    if twists and layers != 2:
        raise ConfigError(f"{f}.twist_deg: twists are only supported for bilayers (layers: 2)")
    stackings += [(0.0, 0.0, t, True) for t in twists]
    if not stackings:
        raise ConfigError(f"{f}: no stackings (give slip_step_A and/or a non-empty twist_deg)")
    return stackings


def _sample_row(name: str, idx: int, seed: int, da: float, db: float, theta: float, random_slip: bool,
                grid: Mapping, mic: Mapping, rea: Mapping) -> dict:
    """One table row: the stacking plus the sample's own draws (in a fixed order: the table depends
    on it) from its seed: slip at a twist, second slip, rotation, origin, realism, microscope."""
    f = f"datasets.{name}"
    material, layers, p = grid["material"], grid["layers"], grid["pixel_size_A"]
    mat, sym = get_material(material), symmetry_for(material)
    lat = mat.lattice_2d
    s = sample_seed(seed, name, idx)
    rng = np.random.default_rng(s)
    if random_slip:  # at a twist the slip only translates the moiré
        fa, fb = rng.random(2)
        da, db = (float(v) for v in sym.canonical_slip(*sym.cartesian_to_slip(np.array([fa, fb]) @ lat)))
    da2 = db2 = 0.0
    if layers == 3:  # second slip uniform over the cell (a full product grid is too large)
        fa, fb = rng.random(2)
        da2, db2 = (float(v) for v in sym.cartesian_to_slip(sym.wigner_seitz(np.array([fa, fb]) @ lat)))
    rot = float(rng.uniform(0, 360)) if rea["random_rotation"] else 0.0
    fa, fb = rng.random(2)  # lattice origin: a random point of one cell near the image centre
    c, sn = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    off = np.array([[c, -sn], [sn, c]]) @ (np.array([fa, fb]) @ lat)
    jit = float(rea["interlayer_jitter_A"])
    smax = float(rea["strain_max"])
    row = {
        "sample_id": f"{name}-{idx:06d}", "dataset": name, "material": material, "layers": layers,
        "Da_A": da, "Db_A": db, "Da2_A": da2, "Db2_A": db2, "theta_deg": float(theta), "rotation_deg": rot,
        "origin_x_A": grid["width_px"] * p / 2 + off[0],
        "origin_y_A": grid["height_px"] * p / 2 + off[1],
        "interlayer_A": mat.interlayer_A + (rng.uniform(-jit, jit) if jit > 0 else 0.0),
        "interlayer2_A": (mat.interlayer_A + (rng.uniform(-jit, jit) if jit > 0 else 0.0)) if layers == 3 else np.nan,
        "strain_xx": rng.uniform(-smax, smax) if smax > 0 else 0.0,
        "strain_yy": rng.uniform(-smax, smax) if smax > 0 else 0.0,
        "strain_xy": rng.uniform(-smax, smax) / 2 if smax > 0 else 0.0,
        "vacancy_fraction": _draw(rng, rea["vacancy_fraction"], f"{f}.realism.vacancy_fraction"),
        "metal_vacancy_fraction": _draw(rng, rea["metal_vacancy_fraction"], f"{f}.realism.metal_vacancy_fraction"),
        "displacement_rms_A": _draw(rng, rea["displacement_rms_A"], f"{f}.realism.displacement_rms_A"),
        **{k: _draw(rng, v, f"{f}.microscope.{k}") for k, v in mic.items()},
        "pixel_size_A": p, "height_px": grid["height_px"], "width_px": grid["width_px"],
        "moire_period_A": _moire_period_A(mat.a_A, sym.fold_twist(theta)) if theta else np.inf,
        "seed": s,
    }
    for k in ("vacancy_fraction", "metal_vacancy_fraction"):
        if not 0 <= row[k] < 1:
            raise ConfigError(f"{f}.realism.{k} must be in [0, 1), got {row[k]}")
    return row


def _moire_period_A(a_A: float, theta_deg: float) -> float:
    t = np.deg2rad(theta_deg)
    return float(a_A / (2 * np.sin(t / 2))) if t > 0 else float("inf")


def enumerate_from_config(config: Mapping, dataset: str) -> pd.DataFrame:
    """Table of one dataset named in a full workflow config."""
    datasets = config.get("datasets") or {}
    if dataset not in datasets:
        raise ConfigError(f"datasets.{dataset}: no such dataset (have: {', '.join(datasets)})")
    return enumerate_dataset(dataset, datasets[dataset], int(config.get("seed", 0)),
                             config.get("microscope"), config.get("realism"))


def read_table(path) -> pd.DataFrame:
    """Read a stackings table (TSV) and check its columns."""
    table = pd.read_csv(path, sep="\t", dtype={"sample_id": str, "dataset": str, "material": str})
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a stackings table, missing columns {missing}")
    return table


def write_table(table: pd.DataFrame, path) -> None:
    table.to_csv(path, sep="\t", index=False, float_format="%.10g")
