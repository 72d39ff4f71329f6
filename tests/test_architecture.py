"""The package's tree is the chain: a stage never imports a later one, core imports no stage,
each workflow script calls its stage's driver, modules and functions stay small."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "vdwstack"
CHAIN = ["core", "structures", "simulate", "drit", "synthesize", "regress", "infer", "closed_loop", "report"]
# Modules above the chain: they assemble every stage (the command line, the Python API and its
# result, the workflow's config schema).
ASSEMBLY = {"cli.py", "api.py", "result.py", "config.py", "schema.py", "__init__.py"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _vdwstack_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vdwstack."):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vdwstack.")}
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use absolute vdwstack.… imports)")
    return out


def test_every_module_belongs_to_a_stage_of_the_chain():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if len(rel.parts) == 1:
            assert rel.name in ASSEMBLY, f"{rel}: top-level module outside the chain's subpackages"
        else:
            assert rel.parts[0] in CHAIN + ["resources"], rel


@pytest.mark.parametrize("stage", CHAIN)
def test_a_stage_imports_only_itself_core_and_earlier_stages(stage):
    allowed = set(CHAIN[:CHAIN.index(stage) + 1]) | {"core"}
    for path in sorted((PKG / stage).rglob("*.py")):
        for mod in _vdwstack_imports(path):
            target = mod.split(".")[1]
            assert target in allowed, f"{path.relative_to(PKG)} imports {mod}: a later stage (or not a stage)"


def test_core_does_not_import_pytorch_at_module_level_except_its_torch_helpers():
    for path in sorted((PKG / "core").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top for a in n.names} | {
            n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
        if path.name != "torch_utils.py":
            assert "torch" not in names, path


def test_each_script_calls_its_stages_driver():
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        mods = _vdwstack_imports(script) - {"vdwstack.core.logs"}
        assert len(mods) == 1, f"{script.name} imports {sorted(mods)}"
        (mod,) = mods
        assert re.fullmatch(r"vdwstack\.[a-z_]+\.stage", mod), f"{script.name}: {mod} is not a stage driver"
        assert len(script.read_text().splitlines()) <= 45, f"{script.name}: an adapter, not logic"


def test_modules_and_functions_stay_small():
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.relative_to(PKG)}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= MAX_FUNCTION_LINES, f"{path.relative_to(PKG)}:{node.lineno} {node.name}: {n} lines"


def test_no_reference_to_a_design_file_users_do_not_have():
    for path in [*PKG.rglob("*.py"), *(ROOT / "workflow").rglob("*"), ROOT / "Snakefile", ROOT / "README.md"]:
        if path.is_file() and path.suffix in (".py", ".smk", ".md", ".rst", ".yaml", ""):
            assert "DESIGN.md" not in path.read_text(), path
    assert (ROOT / "docs" / "architecture.md").is_file()
