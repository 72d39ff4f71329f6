"""Code digests: rules rerun when their code changes meaning, not when files are touched."""

import os

from vdwstack.core.provenance import canonical_order, code_digest, module_closure


def _package(tmp_path):
    pkg = tmp_path / "vdwstack"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Package."""\n')
    (pkg / "helper.py").write_text('"""Helper, in Å."""\n\nSCALE_A = 1.0  # why\n')
    (pkg / "report.py").write_text("from .helper import SCALE_A\n\n\ndef run():\n    return SCALE_A\n")
    (pkg / "unused.py").write_text("X = 1\n")
    script = tmp_path / "script.py"
    script.write_text("from vdwstack.report import run\n\nrun()\n")
    return pkg, script


def test_closure_follows_absolute_and_relative_imports(tmp_path):
    pkg, script = _package(tmp_path)
    names = {p.name for p in module_closure(script, pkg)}
    # Importing vdwstack.report runs the package's __init__ first.
    assert names == {"script.py", "__init__.py", "report.py", "helper.py"}


def test_closure_includes_the_parent_packages_of_a_submodule(tmp_path):
    pkg = tmp_path / "vdwstack"
    (pkg / "stage1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stage1" / "__init__.py").write_text("from vdwstack.stage1.figures import plot\n")
    (pkg / "stage1" / "figures.py").write_text("def plot():\n    return 1\n")
    (pkg / "stage1" / "driver.py").write_text("def run():\n    return 2\n")
    script = tmp_path / "script.py"
    script.write_text("from vdwstack.stage1.driver import run\n\nrun()\n")
    rel = {str(p.relative_to(tmp_path)) for p in module_closure(script, pkg)}
    assert rel == {"script.py", "vdwstack/__init__.py", "vdwstack/stage1/__init__.py",
                   "vdwstack/stage1/figures.py", "vdwstack/stage1/driver.py"}


def test_digest_ignores_comments_docstrings_formatting_and_touch(tmp_path):
    pkg, script = _package(tmp_path)
    before = code_digest(script, pkg)
    helper = pkg / "helper.py"
    helper.write_text('"""Helper: another docstring."""\n\n\n# new comment\nSCALE_A   =   1.0\n')
    os.utime(script)
    (pkg / "unused.py").write_text("X = 2\n")  # not imported by the script
    assert code_digest(script, pkg) == before


def test_digest_changes_with_code_in_any_imported_module(tmp_path):
    pkg, script = _package(tmp_path)
    before = code_digest(script, pkg)
    (pkg / "helper.py").write_text("SCALE_A = 2.0\n")
    changed = code_digest(script, pkg)
    assert changed != before
    script.write_text("from vdwstack.report.stage import run\n\nrun()\nrun()\n")
    assert code_digest(script, pkg) not in (before, changed)


def test_canonical_order_makes_reordered_configs_identical():
    a = {"simulation": {"method": "incoherent", "batch_size": 4}, "datasets": [{"b": 1, "a": {"y": 2, "x": 1}}]}
    b = {"datasets": [{"a": {"x": 1, "y": 2}, "b": 1}], "simulation": {"batch_size": 4, "method": "incoherent"}}
    assert repr(canonical_order(a)) == repr(canonical_order(b))
    assert canonical_order(a) == a  # same content
    assert canonical_order({"l": [3, 1, 2]}) == {"l": [3, 1, 2]}  # list order is content


def test_the_workflow_scripts_digests_cover_their_stage_modules():
    """Each rule's digest follows the real package: the report script reaches every report module
    (and the modules they use), the closed loop reaches the simulator it calls."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pkg = root / "src" / "vdwstack"

    def closure(script):
        return {str(p.relative_to(pkg)) for p in module_closure(root / "workflow" / "scripts" / script)
                if p.is_relative_to(pkg)}

    report = closure("report.py")
    assert {"report/stage.py", "report/figures.py", "report/tables.py", "report/__init__.py",
            "__init__.py"} <= report
    assert not any(p.startswith(("regress/", "drit/", "infer/")) for p in report)
    assert {"closed_loop/comparator.py", "simulate/incoherent.py", "core/microscope.py"} <= closure("closed_loop.py")
