"""Semantic checks of the workflow config that a JSON schema cannot express.

Run at workflow start-up so that a bad value fails before any job runs, with the field named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vdwstack.simulate.multislice import check_sampling
from vdwstack.core.microscope import Optics
from vdwstack.core.errors import ConfigError
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS
from vdwstack.structures.enumeration import enumerate_dataset
from vdwstack.simulate.render import SimulationSettings


_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def _allowed(schema: Mapping) -> str:
    """What a schema node accepts, in words: 'integer ≥ 32, multiple of 4', 'one of a, b'."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    parts = []
    kind = schema.get("type")
    if kind:
        parts.append(" or ".join(kind) if isinstance(kind, list) else kind)
    parts += [f"{sym} {schema[key]}" for key, sym in _BOUNDS if key in schema]
    if "multipleOf" in schema:
        parts.append(f"multiple of {schema['multipleOf']}")
    if "minItems" in schema or "maxItems" in schema:
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", "∞")
        parts.append(f"{lo} items" if lo == hi else f"{lo}–{hi} items")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    if kind and len(parts) > 1:
        return f"{parts[0]} {', '.join(parts[1:])}"
    return ", ".join(parts)


def _type_fits(value, kind) -> bool:
    py = {"object": Mapping, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    kinds = kind if isinstance(kind, list) else [kind]
    return any(k in py and isinstance(value, py[k]) and not (k in ("integer", "number") and isinstance(value, bool))
               for k in kinds)


def _describe(err) -> str:
    """One line per schema violation: the dotted key, the value and what is allowed."""
    from jsonschema.exceptions import best_match

    where = ".".join(map(str, err.absolute_path)) or "config"
    kind, value = err.validator, err.instance
    if kind in ("oneOf", "anyOf") and err.context:
        if kind == "anyOf" and all(e.validator == "required" for e in err.context):
            need = " or ".join(repr(e.validator_value[0]) for e in err.context)
            return f"{where}: needs {need}"
        options = [_allowed(sub) for sub in err.validator_value if isinstance(sub, Mapping)]
        # The branch written for this kind of value (a list, a mapping, ...) says what is wrong in it.
        fits = [i for i, sub in enumerate(err.validator_value) if isinstance(sub, Mapping)
                and _type_fits(value, sub.get("type"))]
        if len(fits) == 1:
            inner = [e for e in err.context if e.relative_schema_path and e.relative_schema_path[0] == fits[0]]
            if inner:
                deepest = best_match(inner)
                if list(deepest.absolute_path) != list(err.absolute_path) or "description" not in err.schema:
                    return _describe(deepest)
        if "description" in err.schema:
            return f"{where}: {value!r} is not allowed (allowed: {err.schema['description']})"
        return f"{where}: {value!r} is not allowed (allowed: {' | '.join(o for o in options if o)})"
    if kind == "additionalProperties" and isinstance(value, Mapping):
        known = set(err.schema.get("properties", {}))
        unknown = sorted(k for k in value if k not in known)
        return f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(known)) or 'none'})"
    if kind == "required":
        missing = [k for k in err.validator_value if isinstance(value, Mapping) and k not in value]
        return f"{where}: missing required key(s) {', '.join(map(repr, missing))}"
    if kind == "propertyNames":
        return f"{where}: name {value!r} is not allowed (allowed: {_allowed(err.validator_value)})"
    return f"{where}: {value!r} is not allowed (allowed: {_allowed(err.schema)})"


def validate_config(config: Mapping, schema_path: str | Path) -> None:
    """Check `config` against the JSON schema; raise ConfigError listing every violation, each
    naming the dotted key, the offending value and the allowed type/range/choices (unknown keys
    are listed with the allowed ones). Defaults are not filled in here."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = list(dict.fromkeys(_describe(e) for e in errors))
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


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


def slip_studies(reg: Mapping) -> dict[str, dict]:
    """Study name -> {train_datasets, test_dataset} of the slip regressors."""
    return {name: dict(spec) for name, spec in reg["slip"].items()}


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
