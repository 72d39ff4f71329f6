"""Content digests of the code a rule runs, so that reruns follow code edits and not file dates.

Snakemake's own `code` rerun trigger looks only at a script's modification time and never at the
package modules the script imports: touching a script reruns its rule and everything downstream,
while editing `vdwstack/report/stage.py` reruns nothing. The workflow therefore passes each rule a
`code` parameter (the digest below) and the default profile leaves `code` out of
`rerun-triggers`: a rule reruns when the *meaning* of its script or of any vdwstack module it
imports changes, and comments, docstrings, blank lines and touched files change nothing.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/vdwstack (this file is in core/)


def _vdwstack_imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vdwstack":
                # `from vdwstack import io` names modules, `from vdwstack import X` may name objects
                names.add("vdwstack")
                names.update(f"vdwstack.{a.name}" for a in node.names)
            elif node.module.startswith("vdwstack."):
                names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            names.add(f"vdwstack.{node.module}")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "vdwstack")
    return names


def _module_paths(name: str, package_dir: Path) -> list[Path]:
    """The module's file and those of its parent packages, whose ``__init__`` Python runs first."""
    parts = name.split(".")
    return [m for k in range(1, len(parts) + 1) if (m := _module_path(".".join(parts[:k]), package_dir))]


def _module_path(name: str, package_dir: Path) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        path = package_dir / "__init__.py"
    else:
        path = package_dir.joinpath(*parts).with_suffix(".py")
        if not path.is_file():
            path = package_dir.joinpath(*parts, "__init__.py")
    return path if path.is_file() else None


def module_closure(script: str | Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The script and every vdwstack module it imports, directly or through other modules (with the
    ``__init__`` of every package on the way)."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _analyse(path.read_text(), str(path))[0]:
            todo += [mod.resolve() for mod in _module_paths(name, package_dir)]
    return sorted(seen)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _analyse(source: str, filename: str) -> tuple[frozenset[str], str]:
    """vdwstack imports and docstring-free syntax-tree dump of one source text, parsed once: every
    rule's digest walks the same shared modules at each Snakemake start. Keyed by the text itself,
    so an edited file is parsed again."""
    tree = ast.parse(source, filename=filename)
    imports = frozenset(_vdwstack_imports(tree))
    return imports, ast.dump(_strip_docstrings(tree), include_attributes=False)


def code_digest(script: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 (16 hex digits) of the syntax trees of a script and the vdwstack modules it uses.

    Comments, docstrings and formatting do not enter the digest; any change to what the code does
    does. The script may live anywhere; modules are looked up in `package_dir`.
    """
    h = hashlib.sha256()
    for path in module_closure(script, package_dir):
        rel = path.relative_to(package_dir) if path.is_relative_to(package_dir) else Path(path.name)
        h.update(str(rel).encode() + b"\0" + _analyse(path.read_text(), str(path))[1].encode() + b"\0")
    return h.hexdigest()[:16]


def canonical_order(value):
    """The same configuration with every mapping's keys sorted, recursively.

    Snakemake compares a rule's params as recorded text, in which a dict keeps its insertion
    order: without this, moving a block within config.yaml would look like a parameter change.
    """
    if isinstance(value, dict):
        return {k: canonical_order(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical_order(v) for v in value]
    return value
