"""The documentation says what the code does: the README's configuration table is the one the
schema generates, every key of the schema is in it, docs/architecture.md names every module and
only paths that exist, and nothing refers to a design file that users do not have."""

import re
import subprocess
from pathlib import Path

import pytest

from vdwstack.schema import TABLE_END, TABLE_START, config_schema, config_table_markdown

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "vdwstack"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
REGENERATE = "regenerate it with `python -m vdwstack.schema --readme-table README.md`"


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1, f"README.md needs one {TABLE_START} … {TABLE_END}"
    return text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].removeprefix("\n")


def _table_rows() -> dict[str, str]:
    """Key (placeholders written `<>`) → the row's 'type / allowed' cell."""
    rows = {}
    for line in _readme_table().splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[re.sub(r"<[^>]*>", "<>", cells[0].strip("`"))] = cells[1]
    return rows


def _schema_keys(node: dict, defs: dict, prefix: str = ""):
    """Every dotted key of the schema, every $ref expanded (named blocks as `<>`)."""
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        yield key
        ref = sub.get("$ref", "").rsplit("/", 1)[-1]
        sub = defs.get(ref, sub) if "properties" in defs.get(ref, {}) else sub
        item = sub.get("additionalProperties")
        if isinstance(item, dict):
            yield f"{key}.<>"
            item = defs.get(item.get("$ref", "").rsplit("/", 1)[-1], item)
            yield from _schema_keys(item, defs, f"{key}.<>")
        yield from _schema_keys(sub, defs, key)


def test_readme_config_table_is_generated_from_the_schema():
    assert _readme_table() == config_table_markdown(), f"README.md's configuration table is out of date: {REGENERATE}"


def test_every_schema_key_is_in_the_readme_table():
    schema = config_schema()
    rows = _table_rows()
    missing = []
    for key in _schema_keys(schema, schema["definitions"]):
        if key in rows:
            continue
        # A block that repeats a definition documented elsewhere: one row naming it.
        parts = key.split(".")
        for i in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:i])
            m = re.search(r"the keys of `([^`]+)`", rows.get(head, ""))
            if m and re.sub(r"<[^>]*>", "<>", m[1]) + "." + ".".join(parts[i:]) in rows:
                break
        else:
            missing.append(key)
    assert not missing, f"schema keys missing from README.md's configuration table: {missing}; {REGENERATE}"


def test_architecture_names_every_module():
    assert ARCHITECTURE.is_file()
    text = ARCHITECTURE.read_text()
    missing = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent)
        dotted = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if f"`{dotted}`" not in text and f"src/{rel.as_posix()}" not in text:
            missing.append(dotted)
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_architecture_mentions_only_paths_that_exist():
    text = ARCHITECTURE.read_text()
    paths = re.findall(r"(?<![\w./<>-])((?:src|workflow|config|resources|envs|tests|docs)/[\w.*<>/-]*)", text)
    assert paths
    missing = []
    for p in sorted(set(paths)):
        pattern = re.sub(r"<[^>]*>", "*", p.rstrip(".").rstrip("/"))
        if not (any(ROOT.glob(pattern)) if "*" in pattern else (ROOT / pattern).exists()):
            missing.append(p)
    assert not missing, f"docs/architecture.md mentions paths that do not exist: {missing}"


def _repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (a walk without .git, results and venvs if git is absent)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             cwd=ROOT, capture_output=True, check=True).stdout.decode()
        return [ROOT / f for f in out.split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "results", ".snakemake", "__pycache__", ".pytest_cache", ".hypothesis"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_file_refers_to_a_design_file_users_do_not_have():
    needle = ("DESIGN" + ".md").encode()
    # tests/test_architecture.py names the file in its own check of the same rule.
    exempt = {ROOT / "tests" / "test_architecture.py"}
    offenders = [str(p.relative_to(ROOT)) for p in _repository_files() if p not in exempt and needle in p.read_bytes()]
    assert not offenders, f"these files refer to a design file that users do not have: {offenders}"


def test_schema_command_takes_no_option_for_a_path(tmp_path, monkeypatch, capsys):
    """`python -m vdwstack.schema --help` prints its usage; it once wrote the schema to a file named --help."""
    from vdwstack.schema import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out and not any(tmp_path.iterdir())
    main([str(tmp_path / "schema.yaml")])
    assert (tmp_path / "schema.yaml").read_text().startswith("# Generated by")
