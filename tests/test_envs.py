"""Conda environment files: parseable, named by every rule, covering what the code imports."""

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Import name → conda package name, where they differ.
CONDA_NAME = {"yaml": "pyyaml", "PIL": "pillow", "skimage": "scikit-image"}
# Imported only when a GPU is asked for (abTEM on CUDA); not part of the CPU envs.
OPTIONAL = {"cupy"}


def _env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"], path
    return env


def _conda_packages(env: dict) -> set[str]:
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            names.add(re.split(r"[=<> ]", dep)[0].lower())
    return names


def _third_party_imports(paths) -> set[str]:
    mods = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in ("vdwstack", "snakemake")}


def test_every_rule_names_an_existing_env():
    rules = 0
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        blocks = re.split(r"^rule ", text, flags=re.M)[1:]
        for block in blocks:
            rules += 1
            m = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            assert m, f"{smk.name}: rule {block.split(':')[0]} has no conda env"
            assert (smk.parent / m.group(1)).resolve().is_file(), m.group(1)
    assert rules >= 2


def test_envs_cover_the_imports_of_the_code_they_run():
    env = _env(ROOT / "envs" / "simulation.yaml")
    pkgs = _conda_packages(env)
    assert "python" in pkgs
    # The package is pip-installed into the env; its third-party imports must come from conda.
    code = list((ROOT / "src" / "vdwstack").glob("*.py")) + list((ROOT / "workflow" / "scripts").glob("*.py"))
    missing = {CONDA_NAME.get(m, m).lower() for m in _third_party_imports(code) - OPTIONAL} - pkgs
    assert not missing, f"envs/simulation.yaml lacks {sorted(missing)}"
    post = ROOT / "envs" / "simulation.post-deploy.sh"
    assert post.is_file() and "pip install" in post.read_text(), "the env must install vdwstack itself"
