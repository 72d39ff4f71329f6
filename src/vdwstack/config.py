"""Semantic checks of the workflow config that a JSON schema cannot express.

Run at workflow start-up so that a bad value fails before any job runs, with the field named.
"""

from __future__ import annotations

from collections.abc import Mapping

from vdwstack.multislice import check_sampling
from vdwstack.optics import Optics
from vdwstack.stackings import MICROSCOPE_DEFAULTS, ConfigError, enumerate_dataset
from vdwstack.simulate import SimulationSettings


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
        named = [("regress.slip.train_datasets", d) for d in reg["slip"]["train_datasets"]]
        named += [("regress.slip.test_dataset", reg["slip"]["test_dataset"]),
                  ("regress.twist.train_dataset", reg["twist"]["train_dataset"]),
                  ("regress.twist.test_dataset", reg["twist"]["test_dataset"])]
        for field, name in named:
            if name not in datasets:
                raise ConfigError(f"{field}: {name!r} is not one of the datasets ({', '.join(datasets)})")
        crop = reg["settings"].get("crop_px", 128)
        for field, name in named:
            if int(datasets[name].get("image_size_px", 256)) < crop:
                raise ConfigError(f"regress.settings.crop_px={crop} is larger than datasets.{name}.image_size_px")

