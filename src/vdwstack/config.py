"""The workflow's configuration checks that a JSON schema cannot express (run at workflow start-up,
before any job), and the routing of the regress block (studies, per-dataset settings).

The schema itself is made from the stages' settings dataclasses by :mod:`vdwstack.schema`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vdwstack.core.errors import ConfigError
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS, Optics
from vdwstack.core.validation import validate_config
from vdwstack.infer.settings import InferenceSettings
from vdwstack.simulate.multislice import check_sampling
from vdwstack.simulate.render import SimulationSettings
from vdwstack.structures.enumeration import enumerate_dataset

__all__ = ["ConfigError", "check_config", "evaluation_views", "inference_blocks", "regressor_settings",
           "slip_studies", "validate_config"]


def _extreme(value, pick):
    return pick(value) if isinstance(value, (list, tuple)) else value


def check_config(config: Mapping) -> None:
    """Raise ConfigError naming the field of the first bad value found."""
    try:
        sim = SimulationSettings.from_mapping(config.get("simulation"))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"simulation: {e}") from None
    datasets = config.get("datasets") or {}
    if not datasets:
        raise ConfigError("datasets: at least one dataset is needed")
    for name, spec in datasets.items():
        # Enumeration is cheap and checks material, grid, ranges and optics of each dataset.
        table = enumerate_dataset(name, spec, int(config.get("seed", 0)), config.get("microscope"), config.get("realism"))
        if sim.method != "incoherent":
            mic = {**MICROSCOPE_DEFAULTS, **dict(config.get("microscope") or {}), **dict(spec.get("microscope") or {})}
            worst = Optics(
                energy_eV=_extreme(mic["energy_eV"], min),
                adf_inner_mrad=_extreme(mic["adf_inner_mrad"], min),
                adf_outer_mrad=_extreme(mic["adf_outer_mrad"], max),
            )
            try:
                check_sampling(worst, sim.multislice)
            except ValueError as e:
                raise ConfigError(f"simulation.{e}") from None
        del table
    drit = config.get("drit")
    if drit is not None:
        if drit.get("dataset") not in datasets:
            raise ConfigError(f"drit.dataset: {drit.get('dataset')!r} is not one of the datasets ({', '.join(datasets)})")
        spec = datasets[drit["dataset"]]
        crop = drit.get("crop_px", 96)
        if int(spec.get("image_size_px", 256)) < crop:
            raise ConfigError(f"drit.crop_px={crop} is larger than datasets.{drit['dataset']}.image_size_px")
    reg = config.get("regress")
    if reg is not None:
        _check_regress(reg, datasets)


def _check_regress(reg: Mapping, datasets: Mapping) -> None:
    named = []
    owner: dict[str, str] = {}
    for study, spec in reg["slip"].items():
        for d in spec["train_datasets"]:
            if d in owner:
                raise ConfigError(f"regress.slip.{study}.train_datasets: {d!r} is already trained in study {owner[d]!r}")
            owner[d] = study
            named.append((f"regress.slip.{study}.train_datasets", d, regressor_settings(reg, "slip", d)))
        named.append((f"regress.slip.{study}.test_dataset", spec["test_dataset"], regressor_settings(reg, "slip", spec["train_datasets"][0])))
    tw = regressor_settings(reg, "twist", reg["twist"]["train_dataset"])
    named += [("regress.twist.train_dataset", reg["twist"]["train_dataset"], tw),
              ("regress.twist.test_dataset", reg["twist"]["test_dataset"], tw)]
    for field, name, _ in named:
        if name not in datasets:
            raise ConfigError(f"{field}: {name!r} is not one of the datasets ({', '.join(datasets)})")
    for field, name, settings in named:
        crop = settings.get("crop_px", 128)
        if int(datasets[name].get("image_size_px", 256)) < crop:
            raise ConfigError(f"regress: crop_px={crop} is larger than datasets.{name}.image_size_px ({field})")
    for study, spec in reg["slip"].items():
        materials = {datasets[d]["material"] for d in [*spec["train_datasets"], spec["test_dataset"]]}
        if len(materials) > 1:
            raise ConfigError(f"regress.slip.{study}: its datasets mix materials ({', '.join(sorted(materials))})")
    for study, spec in reg["slip"].items():
        src = spec.get("init_from")
        if src is None:
            continue
        if src not in owner:
            raise ConfigError(f"regress.slip.{study}.init_from: {src!r} is not trained by any slip study "
                              f"(trained: {', '.join(owner)})")
        if owner[src] == study:
            raise ConfigError(f"regress.slip.{study}.init_from: {src!r} is trained by this study itself")
        seen, s = {study}, owner[src]
        while s is not None:  # a chain of initialisations must end (Snakemake would see a cycle)
            if s in seen:
                raise ConfigError(f"regress.slip.{study}.init_from: the studies initialise each other in a cycle")
            seen.add(s)
            nxt = reg["slip"][s].get("init_from")
            s = owner.get(nxt) if nxt is not None else None


def slip_studies(reg: Mapping) -> dict[str, dict]:
    """Study name -> {train_datasets, test_dataset} of the slip regressors."""
    return {name: dict(spec) for name, spec in reg["slip"].items()}


def init_dataset(reg: Mapping, dataset: str) -> str | None:
    """The dataset whose slip model starts the slip model trained on `dataset` (its study's
    ``init_from``), or None: trained from random weights."""
    for spec in reg["slip"].values():
        if dataset in spec["train_datasets"]:
            return spec.get("init_from")
    return None


def regressor_settings(reg: Mapping, task: str, dataset: str) -> dict:
    """Training settings of the `task` model trained on `dataset`: regress.settings overridden by
    the settings of the slip study that trains on it (or of the twist block)."""
    settings = dict(reg.get("settings") or {})
    if task == "twist":
        settings.update(reg["twist"].get("settings") or {})
        return settings
    for spec in reg["slip"].values():
        if dataset in spec["train_datasets"]:
            settings.update(spec.get("settings") or {})
    return settings


def evaluation_views(config: Mapping) -> dict[str, bool]:
    """The views of each crop that the networks' evaluation adds to its quarter turns and fields so that
    it reads the test images as inference reads an image: ``tta_mirror`` of the ``infer`` block (its
    default is :class:`InferenceSettings`')."""
    return {"tta_mirror": InferenceSettings.from_mapping(config.get("infer")).tta_mirror}


def inference_blocks(path: str | Path) -> dict[str, dict]:
    """The ``infer``, ``closed_loop`` and ``microscope`` blocks of a workflow config file (YAML): what a
    reading outside the workflow takes from a run's config (``vdwstack infer --config``, the benchmarks'
    ``--config``), checked before any image is read. ValueError naming the file when it cannot be read or
    holds no mapping, or naming the field (``block.field``) for a bad key or value."""
    import yaml

    from vdwstack.closed_loop.settings import ClosedLoopSettings

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--config {path}: cannot read it ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"--config {path}: expected a YAML mapping (a workflow config)")
    blocks = {k: config.get(k) or {} for k in ("infer", "closed_loop", "microscope")}
    InferenceSettings.from_mapping(blocks["infer"])
    ClosedLoopSettings.from_mapping(blocks["closed_loop"])
    return blocks
