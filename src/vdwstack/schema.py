"""The JSON schema of the workflow's configuration, made from the stages' settings dataclasses,
and the README's configuration table made from the schema.

Each stage's settings dataclass owns its keys, defaults, bounds and descriptions
(:mod:`vdwstack.core.settings`); :func:`config_schema` assembles them with the routing blocks
(datasets, studies, sheets). ``python -m vdwstack.schema workflow/schemas/config.schema.yaml``
writes the schema, ``python -m vdwstack.schema --readme-table README.md`` the README's table; tests
check that both are up to date. Blocks that are merged key by key with others (``microscope``,
``realism``, ``regress.*.settings``) list no defaults in the schema: Snakemake would fill them into
the overriding block and undo the merge.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.core.microscope import MICROSCOPE_DEFAULTS, Optics
from vdwstack.core.settings import settings_schema
from vdwstack.infer.settings import InferenceSettings
from vdwstack.simulate.degrade import Degradation
from vdwstack.simulate.render import SimulationSettings
from vdwstack.structures.enumeration import Realism
from vdwstack.structures.materials import MATERIALS

__all__ = ["config_schema", "config_table_markdown", "schema_yaml"]


def _without_defaults(schema: dict) -> dict:
    """The same schema with each default moved into its description (for merged blocks)."""
    out = {}
    for k, v in schema.items():
        if k == "properties":
            out[k] = {}
            for name, node in v.items():
                node = _without_defaults(node)
                if "default" in node:
                    d = node.pop("default")
                    node["description"] = f"{node.get('description', '')} (default {d})".strip()
                out[k][name] = node
        else:
            out[k] = v
    return out


def _microscope_schema() -> dict:
    """Every scalar of :class:`Optics`, a value or a uniform range [min, max]."""
    from dataclasses import fields

    props = {f.name: {"$ref": "#/definitions/number_or_range",
                      "description": f"{f.metadata['doc']} (default {f.default:g})"}
             for f in fields(Optics) if f.name in MICROSCOPE_DEFAULTS}
    return {"description": "microscope of the simulations: a value, or [min, max] drawn uniformly per sample",
            "type": "object", "additionalProperties": False, "properties": props}


def _dataset_schema(materials: list[str]) -> dict:
    return {
        "description": "one simulated dataset: material, stackings (slip grid and/or twists), image grid",
        "type": "object", "additionalProperties": False,
        "required": ["material", "pixel_size_A", "image_size_px"],
        "properties": {
            "material": {"type": "string", "enum": materials, "description": "monolayer material"},
            "layers": {"type": "integer", "enum": [2, 3], "default": 2, "description": "bilayer or trilayer"},
            "slip_step_A": {"type": "number", "exclusiveMinimum": 0, "description": "slip grid step (Å)"},
            "twist_deg": {
                "description": "list of twists (degrees) or {start, stop, step}",
                "oneOf": [{"type": "array", "items": {"type": "number"}, "minItems": 1},
                          {"type": "object", "additionalProperties": False, "required": ["start", "stop", "step"],
                           "properties": {"start": {"type": "number"}, "stop": {"type": "number"},
                                          "step": {"type": "number", "exclusiveMinimum": 0}}}]},
            "samples_per_stacking": {"type": "integer", "minimum": 1, "default": 1,
                                     "description": "random realisations of each stacking"},
            "pixel_size_A": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.4,
                             "description": "pixel size of the simulations (Å/px)"},
            "image_size_px": {"type": "integer", "minimum": 16, "maximum": 8192, "description": "image side (px)"},
            "microscope": {"$ref": "#/definitions/microscope"},
            "realism": {"$ref": "#/definitions/realism"},
        },
        "anyOf": [{"required": ["slip_step_A"]}, {"required": ["twist_deg"]}],
    }


def _pseudo_schema(materials: list[str]) -> dict:
    single = {k: dict(v) for k, v in _microscope_schema()["properties"].items()}
    for v in single.values():
        v.pop("$ref")
        v["type"] = "number"
    for k in ("energy_eV", "semiangle_mrad", "adf_outer_mrad"):
        single[k]["exclusiveMinimum"] = 0
    for k in ("source_fwhm_A", "adf_inner_mrad"):
        single[k]["minimum"] = 0
    return {
        "description": "demo images made by the pipeline (known truth): the stacking, the grid, the degradation",
        "type": "object", "additionalProperties": False, "required": ["material", "pixel_size_A", "size_px"],
        "properties": {
            "material": {"type": "string", "enum": materials, "description": "monolayer material"},
            "layers": {"type": "integer", "enum": [1, 2, 3], "description": "number of layers (default 2)"},
            "Da_A": {"type": "number", "description": "slip along â (Å)"},
            "Db_A": {"type": "number", "description": "slip along b̂ (Å)"},
            "theta_deg": {"type": "number", "description": "twist (°)"},
            "rotation_deg": {"type": "number", "description": "in-plane rotation of the stack (°)"},
            "vacancy_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                                 "description": "chalcogen vacancies (fraction)"},
            "pixel_size_A": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.4,
                             "description": "pixel size of the image (Å/px)"},
            "size_px": {"type": "integer", "minimum": 32, "description": "image side (px)"},
            "microscope": {"description": "single-valued overrides of the microscope defaults", "type": "object",
                           "additionalProperties": False, "properties": single},
            "degradation": _without_defaults(settings_schema(Degradation)),
        },
    }


def _regress_schema() -> dict:
    ref = {"$ref": "#/definitions/regress_settings"}
    return {
        "description": "slip and twist regressors: one slip study per material, the twist model, their settings",
        "type": "object", "additionalProperties": False, "required": ["slip", "twist", "settings"],
        "properties": {
            "slip": {
                "description": "slip studies, one per material (e.g. ReS2, MoS2): one model per training grid, "
                               "all evaluated on the study's held-out test dataset",
                "type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[A-Za-z0-9_]+$"},
                "additionalProperties": {
                    "description": "one slip study (named after its material)",
                    "type": "object", "additionalProperties": False, "required": ["train_datasets", "test_dataset"],
                    "properties": {
                        "train_datasets": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                           "description": "datasets with one model each (the grids compared)"},
                        "test_dataset": {"type": "string", "description": "held-out dataset all its models are tested on"},
                        "init_from": {"type": "string",
                                      "description": "a dataset of another slip study: its trained model's "
                                                     "backbone starts this study's models (the head starts "
                                                     "anew); e.g. trilayers from the bilayer model"},
                        "settings": ref}}},
            "twist": {"description": "the twist model", "type": "object", "additionalProperties": False,
                      "required": ["train_dataset", "test_dataset"],
                      "properties": {"train_dataset": {"type": "string", "description": "dataset it is trained on"},
                                     "test_dataset": {"type": "string", "description": "held-out test dataset"},
                                     "settings": ref}},
            "settings": ref,
        },
    }


def config_schema() -> dict:
    """The JSON schema of the workflow's configuration (see the module docstring)."""
    from vdwstack.drit.training import DritConfig
    from vdwstack.regress.training import RegressorConfig
    from vdwstack.synthesize.stage import SynthesizeSettings

    materials = sorted(MATERIALS)
    drit = settings_schema(DritConfig, "Trident-enhanced DRIT (simulation → experiment style)", extra={
        "dataset": {"type": "string", "description": "simulation dataset used as domain A"},
        "eval_images": {"type": "integer", "minimum": 1, "default": 12,
                        "description": "simulations translated for the metrics"}})
    drit["required"] = ["dataset"]
    regress_settings = _without_defaults(settings_schema(RegressorConfig, skip=("task",)))
    regress_settings["description"] = ("regressor training settings; a study's or the twist block's own settings "
                                       "override regress.settings")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "vdwstack workflow configuration",
        "type": "object",
        "definitions": {
            "regress_settings": regress_settings,
            "number_or_range": {"description": "a fixed value or a uniform range [min, max]",
                                "oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"},
                                                               "minItems": 2, "maxItems": 2}]},
            "microscope": _microscope_schema(),
            "realism": _without_defaults(settings_schema(Realism)),
            "dataset": _dataset_schema(materials),
        },
        "properties": {
            "seed": {"type": "integer", "minimum": 0, "description": "global seed (tables, simulations, training)"},
            "images": {"type": "string", "description": "sample sheet of experimental images to analyse (TSV)"},
            "style_references": {"type": "string",
                                 "description": "sheet of experimental style references for DRIT (TSV)"},
            "microscope": {"$ref": "#/definitions/microscope"},
            "realism": {"$ref": "#/definitions/realism"},
            "simulation": settings_schema(SimulationSettings),
            "pseudo_experimental": {"description": "demo images with known truth, written to "
                                                   "results/pseudo_experimental/<name>.tif",
                                    "type": "object", "propertyNames": {"pattern": "^[A-Za-z0-9_]+$"},
                                    "additionalProperties": _pseudo_schema(materials)},
            "infer": settings_schema(InferenceSettings, extra={"on_error": {
                "type": "string", "enum": ["record", "fail"], "default": "record",
                "description": "record: a failed image becomes an error entry in the report; fail: stop"}}),
            "closed_loop": settings_schema(ClosedLoopSettings, extra={"enabled": {
                "type": "boolean", "default": True, "description": "run the check and show it in the report"}}),
            "drit": drit,
            "synthesize": settings_schema(SynthesizeSettings),
            "regress": _regress_schema(),
            "datasets": {"description": "the simulated datasets, by name", "type": "object", "minProperties": 1,
                         "propertyNames": {"pattern": "^[A-Za-z0-9_]+$"},
                         "additionalProperties": {"$ref": "#/definitions/dataset"}},
        },
        "required": ["seed", "images", "style_references", "simulation", "datasets", "drit", "synthesize", "regress"],
        "additionalProperties": False,
    }


SCHEMA_HEADER = ("# Generated by `python -m vdwstack.schema` from the stages' settings dataclasses: edit those,\n"
                 "# then regenerate (tests/test_config_schema.py checks that this file is up to date).\n")


def schema_yaml() -> str:
    """The schema as the YAML text of workflow/schemas/config.schema.yaml."""
    import yaml

    return SCHEMA_HEADER + yaml.safe_dump(config_schema(), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    """Write the schema to the given path (default: print it). ``--readme-table [README.md]``: the
    README's configuration table instead, written between its markers in the file (or printed)."""
    # argparse, so that an option-like word (--help) is never taken for the output path.
    ap = argparse.ArgumentParser(prog="python -m vdwstack.schema", description=main.__doc__)
    ap.add_argument("--readme-table", action="store_true",
                    help="the README's configuration table instead of the schema")
    ap.add_argument("path", nargs="?", type=Path, help="file to write (default: print)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.readme_table:
        text = config_table_markdown()
        if args.path:
            head, rest = args.path.read_text().split(TABLE_START, 1)
            text = f"{head}{TABLE_START}\n{text}{TABLE_END}{rest.split(TABLE_END, 1)[1]}"
    else:
        text = schema_yaml()
    if args.path:
        args.path.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


# --- the README's configuration table (``python -m vdwstack.schema --readme-table README.md``) ------
TABLE_START, TABLE_END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def _value(v) -> str:
    """A value as a config file spells it: true, null, [0.3, 1.6], incoherent."""
    import json
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _kind(node: Mapping) -> str:
    """What a schema node accepts, briefly: 'number > 0, ≤ 0.3', 'one of a, b', 'list of 2 numbers'."""
    if node.get("$ref", "").endswith("/number_or_range"):
        return "number, or range [min, max]"
    if "enum" in node:
        return "one of " + ", ".join(map(_value, node["enum"]))
    if "oneOf" in node:
        return ", or ".join(map(_kind, node["oneOf"]))
    kinds = node.get("type", [])
    kinds = kinds if isinstance(kinds, list) else [kinds]
    text = next((k for k in kinds if k != "null"), "")
    if text == "array":
        word, _, bounds = _kind(node.get("items", {})).partition(" ")
        lo, hi = node.get("minItems"), node.get("maxItems")
        text = "non-empty list of " if lo == 1 and hi is None else f"list of {lo} " if lo == hi else "list of "
        text += word + ("s" if word in ("number", "integer", "string") else "") + (f" {bounds}" if bounds else "")
    elif text == "object":
        text = "{" + ", ".join(node.get("properties", {})) + "}"
    marks = [f"{sym} {node[key]}" for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                                   ("exclusiveMaximum", "<"), ("multipleOf", "multiple of")) if key in node]
    return text + (" " + ", ".join(marks) if marks else "") + (", or null" if "null" in kinds else "")


def _config_rows(node: Mapping, key: str, defs: Mapping, canon: dict | None):
    """(key, node, required, ref) of every property below `node`, $refs resolved. With `canon`
    (definition → the key it is expanded at) a definition used again gets one row, not its keys."""
    for name, sub in node.get("properties", {}).items():
        k = f"{key}.{name}" if key and name else key or name
        ref = sub.get("$ref", "").rsplit("/", 1)[-1]
        ref = ref if "properties" in defs.get(ref, {}) else ""
        yield k, sub, name in node.get("required", ()), ref
        if ref and canon is not None and canon[ref] != k:
            continue
        sub = {**defs[ref], **sub} if ref else sub
        if isinstance(sub.get("additionalProperties"), dict):  # named blocks: datasets.<name>, regress.slip.<study>
            item = {"properties": {"": sub["additionalProperties"]}}
            yield from _config_rows(item, k + (".<study>" if k == "regress.slip" else ".<name>"), defs, canon)
        yield from _config_rows(sub, k, defs, canon)


def config_table_markdown() -> str:
    """The README's configuration table: one row per key of :func:`config_schema` (dotted keys, a
    definition expanded where it is nearest the top), what it allows, its default, its description."""
    import re

    schema = config_schema()
    defs, canon = schema["definitions"], {}
    for k, _, _, ref in _config_rows(schema, "", defs, None):
        if ref and (ref not in canon or k.count(".") < canon[ref].count(".")):
            canon[ref] = k
    lines = ["| key | type / allowed | default | description |", "|---|---|---|---|"]
    for k, node, required, ref in _config_rows(schema, "", defs, canon):
        node = {**defs.get(ref, {}), **node}
        desc = re.sub(r"``([^`]+)``", r"`\1`", node.get("description", ""))
        default = _value(node["default"]) if "default" in node else ""
        if m := re.search(r"\s*\(default ([^()]*)\)$", desc):  # merged blocks keep their defaults in the text
            desc, default = desc[:m.start()], {"None": "null", "True": "true", "False": "false"}.get(m[1], m[1])
        if ref and canon[ref] != k:
            kind, desc = f"block: the keys of `{canon[ref]}`", f"overrides `{canon[ref]}` key by key"
        elif isinstance(node.get("additionalProperties"), dict):
            kind = f"blocks by name (`{node['propertyNames']['pattern']}`)"
        elif "properties" in node:
            needs = " or ".join(f"`{r}`" for alt in node.get("anyOf", []) for r in alt.get("required", []))
            kind = "block" + (f", needs {needs}" if needs else "")
        else:
            kind = _kind(node)
        cells = [f"`{k}`", kind + (", required" if required else ""), f"`{default}`" if default else "", desc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
