"""Conda environment files: parseable, named by every rule, covering what the code imports."""

import ast
import re
import sys
from pathlib import Path

import yaml

from helpers import rule_blocks
from vdwstack.core.provenance import module_closure

ROOT = Path(__file__).resolve().parents[1]
# Import name → conda package name, where they differ.
CONDA_NAME = {"yaml": "pyyaml", "PIL": "pillow", "skimage": "scikit-image", "rsciio": "rosettasciio",
              "matplotlib_scalebar": "matplotlib-scalebar"}
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
    for smk, name, block in rule_blocks():
        rules += 1
        m = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
        assert m, f"{smk.name}: rule {name} has no conda env"
        assert (smk.parent / m.group(1)).resolve().is_file(), m.group(1)
    assert rules >= 2


CONDA_NAME["torch"] = "pytorch"


def _rule_envs() -> dict[str, str]:
    """script name -> env file, from the rule files."""
    out = {}
    for _, _, block in rule_blocks():
        env = re.search(r"conda:\s*\n\s*\"\.\./\.\./envs/([^\"]+)\"", block)
        script = re.search(r"script:\s*\n\s*\"\.\./scripts/([^\"]+)\"", block)
        if env and script:
            out[script.group(1)] = env.group(1)
    return out


def test_envs_cover_the_imports_of_the_code_they_run():
    envs = _rule_envs()
    assert envs, "no rule with a script and a conda env found"
    for script, env_file in envs.items():
        env = _env(ROOT / "envs" / env_file)
        pkgs = _conda_packages(env)
        assert "python" in pkgs
        code = module_closure(ROOT / "workflow" / "scripts" / script)
        missing = {CONDA_NAME.get(m, m).lower() for m in _third_party_imports(code) - OPTIONAL} - pkgs
        assert not missing, f"envs/{env_file} lacks {sorted(missing)} needed by {script}"
        post = ROOT / "envs" / (env_file.removesuffix(".yaml") + ".post-deploy.sh")
        assert post.is_file() and "pip install" in post.read_text(), f"{env_file} must install vdwstack itself"
