"""Config validation against a JSON schema, with one readable line per violation.

Every violation is listed at once with its dotted key, the offending value and what is allowed
(type, range, choices; unknown keys with the allowed ones), so a bad config fails before any job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vdwstack.core.errors import ConfigError

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
