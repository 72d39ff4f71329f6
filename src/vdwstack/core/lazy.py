"""Public names of a subpackage imported on first use.

A stage's ``__init__`` lists its public names; importing them eagerly would make every module of
the stage (and what they import: abTEM, zarr, PyTorch) a dependency of anything that uses one of
its modules — the report's environment, for one, has no abTEM and needs only the stacking names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """(``__getattr__``, ``__all__``) for `package` whose names live in its modules: name → module."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
