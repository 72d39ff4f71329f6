"""Settings dataclasses own their defaults, bounds and descriptions; the config schema is made from them.

Each stage's settings are a frozen dataclass whose fields are declared with :func:`setting`: the
default, the JSON-schema constraints (``minimum``, ``exclusiveMinimum``, ``maximum``, ``enum``,
``minItems``, …) and a one-line description with the unit. :func:`settings_schema` turns a
dataclass into the JSON schema of its config block, so the workflow's schema
(``workflow/schemas/config.schema.yaml``, written by ``python -m vdwstack.schema``), the README's
configuration table and the CLI's defaults cannot disagree with the code; :func:`check_settings`
enforces the same bounds when the dataclass is built outside the workflow (CLI, notebooks).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

NUMBER_OR_RANGE = {"$ref": "#/definitions/number_or_range"}


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None, **schema: Any):
    """A dataclass field with its description and JSON-schema constraints (see module docstring)."""
    metadata = {"doc": doc, "schema": schema}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _json_default(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    return value


def _type_schema(hint: Any) -> dict:
    """JSON-schema type of a field's annotation (float, int, bool, str, tuples, X | None, ranges)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 2 and float in non_none and any(typing.get_origin(a) is tuple for a in non_none):
            return dict(NUMBER_OR_RANGE)  # a value or a uniform range [min, max]
        inner = _type_schema(non_none[0])
        if type(None) in args:
            inner["type"] = [inner["type"], "null"]
        return inner
    if origin is tuple:
        item = _type_schema(args[0])
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": item}
        return {"type": "array", "items": item, "minItems": len(args), "maxItems": len(args)}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"no JSON-schema type for {hint!r}")


def settings_schema(cls: type, description: str = "", extra: Mapping[str, dict] | None = None,
                    skip: tuple[str, ...] = ()) -> dict:
    """JSON schema of a settings dataclass: one property per field (type from the annotation,
    constraints and description from :func:`setting`, default from the dataclass); nested
    dataclasses become nested objects. `extra`: further (routing) properties of the block."""
    hints = typing.get_type_hints(cls)
    props: dict[str, dict] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        meta = f.metadata
        if dataclasses.is_dataclass(hint):
            node = settings_schema(hint, meta.get("doc", ""))
        else:
            node = {**_type_schema(hint), **meta.get("schema", {})}
            if "enum" in node:
                node.pop("type", None)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            node["default"] = _json_default(default)
        if meta.get("doc"):
            node["description"] = meta["doc"]
        props[f.name] = node
    props.update(extra or {})
    out = {"type": "object", "additionalProperties": False, "properties": props}
    if description or cls.__doc__:
        out = {"description": description or cls.__doc__.strip().splitlines()[0], **out}
    return out


_BOUNDS = {"minimum": ("≥", lambda v, b: v >= b), "exclusiveMinimum": (">", lambda v, b: v > b),
           "maximum": ("≤", lambda v, b: v <= b), "exclusiveMaximum": ("<", lambda v, b: v < b)}


def check_settings(obj: Any, block: str) -> None:
    """Raise ValueError naming ``block.field`` for a value outside its declared constraints."""
    for f in dataclasses.fields(obj):
        schema = f.metadata.get("schema", {})
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_settings(value, f"{block}.{f.name}")
            continue
        if "enum" in schema and value not in schema["enum"]:
            raise ValueError(f"{block}.{f.name} must be one of {', '.join(map(str, schema['enum']))}, got {value!r}")
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple):
            lo, hi = schema.get("minItems", 0), schema.get("maxItems", len(value))
            if not lo <= len(value) <= hi:
                raise ValueError(f"{block}.{f.name} needs {lo}–{hi} values, got {len(value)}")
            schema = schema.get("items", {})
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            for key, (symbol, ok) in _BOUNDS.items():
                if key in schema and not ok(v, schema[key]):
                    raise ValueError(f"{block}.{f.name} must be {symbol} {schema[key]}, got {value!r}")
            if "multipleOf" in schema and v % schema["multipleOf"]:
                raise ValueError(f"{block}.{f.name} must be a multiple of {schema['multipleOf']}, got {v!r}")


def settings_from_mapping(cls: type, m: Mapping | None, block: str, ignore: tuple[str, ...] = ()):
    """Build a settings dataclass from a config block: unknown keys refused (naming `block`),
    lists turned into tuples, nested blocks into their dataclasses, every bound checked."""
    m = {k: v for k, v in dict(m or {}).items() if k not in ignore}
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(m) - set(names)
    if unknown:
        raise ValueError(f"{block}: unknown setting(s) {sorted(unknown)} (allowed: {', '.join(sorted(names))})")
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in m.items():
        hint = hints[k]
        if dataclasses.is_dataclass(hint):
            v = settings_from_mapping(hint, v, f"{block}.{k}")
        elif isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    obj = cls(**kw)
    check_settings(obj, block)
    return obj
