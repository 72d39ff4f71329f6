"""The Snakemake workflow: dry run, lint, format, schema errors, a tiny real run."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import rule_blocks

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# An image row added to the tiny run's sheet (reuses an image the run already made).
NEW_IMAGE_ROW = "test_new\tresults/pseudo_experimental/test_twist.tif\tMoS2\t2\ttwist\t0.12\t\n"


def _workdir(tmp_path: Path, config: dict | None = None) -> Path:
    work = tmp_path / "work"
    shutil.copytree(ROOT / ".test", work)
    if config is not None:
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def _snakemake(work: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(work), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def _tiny_config() -> dict:
    return yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())


def test_dry_run_shows_the_dag(tmp_path):
    res = _snakemake(_workdir(tmp_path), "-n", "--cores", "1")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for rule in ("structures", "simulate", "pseudo_experimental", "drit_train", "synthesize", "train_slip",
                 "train_twist", "evaluate_slip", "evaluate_twist", "all"):
        assert rule in out
    assert "simulate        2" in out or "simulate 2" in " ".join(out.split())


def test_demo_config_dry_run():
    res = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def _rule_threads() -> dict[str, int]:
    """Each rule's declared ``threads:``, from the rule files."""
    threads = {}
    for _, name, block in rule_blocks():
        found = re.search(r"^\s+threads: (\d+)", block, flags=re.M)
        threads[name] = int(found.group(1)) if found else 1
    return threads


def test_cpu_hour_profile_gives_every_job_one_core():
    """`snakemake --profile profiles/cpu_hour` is the CPU-hour run with one thread per job: every rule
    that asks for more than one thread is brought down to one (a job left at two would hold both cores
    and stop the other training; DRIT at two waited minutes for both to be free); the profile names
    only rules that exist."""
    profile = yaml.safe_load((ROOT / "profiles" / "cpu_hour" / "config.yaml").read_text())
    threads = _rule_threads()
    assert set(profile["set-threads"]) <= set(threads)
    assert {rule for rule, n in threads.items() if n > 1} <= set(profile["set-threads"])
    assert set(profile["set-threads"].values()) == {1}
    assert profile["configfile"] == ["config/config.yaml", "config/cpu_hour.yaml"]

    res = subprocess.run([*SNAKEMAKE, "--profile", "profiles/cpu_hour", "-n"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "train_slip 3" in " ".join(out.split())  # the CPU-hour config's three slip models, not the demo's one
    # The dry run prints `threads: N` for jobs with more than one thread: none.
    assert not re.search(r"^\s+threads: [2-9]", out, flags=re.M), out
    for target in profile["prioritize"]:  # a target the run does not make would prioritize nothing
        assert re.search(rf"^\s+output: .*{re.escape(target)}", out, re.M), target


def test_lint_is_clean():
    res = subprocess.run([*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_snakefmt_is_clean():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    if snakefmt is None:
        pytest.skip("snakefmt not installed")
    res = subprocess.run([snakefmt, "--check", "Snakefile", "workflow/rules"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    "path,value,expected",
    [
        (("datasets", "ReS2_slip", "slip_step_A"), -1, "slip_step_A"),
        (("datasets", "ReS2_slip", "material"), "MoTe3", "material"),
        (("simulation", "method"), "raytrace", "method"),
        (("datasets", "ReS2_slip", "pixel_size_A"), "big", "pixel_size_A"),
        (("regress", "slip", "ReS2", "test_dataset"), "nope", "regress.slip.ReS2.test_dataset"),
        (("regress", "slip", "ReS2", "test_dataset"), "MoS2_twist", "mix materials"),
        (("regress", "twist", "settings"), {"crop_px": 4096}, "crop_px=4096"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, path, value, expected):
    config = _tiny_config()
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    res = _snakemake(_workdir(tmp_path, config), "-n", "--cores", "1")
    assert res.returncode != 0
    assert expected in res.stdout + res.stderr


def test_multislice_sampling_too_coarse_fails_early(tmp_path):
    config = _tiny_config()
    config["simulation"] = {"method": "multislice", "multislice": {"potential_sampling_A": 0.08}}
    res = _snakemake(_workdir(tmp_path, config), "-n", "--cores", "1")
    assert res.returncode != 0
    assert "potential_sampling_A=0.08" in res.stdout + res.stderr


@pytest.mark.slow
def test_tiny_workflow_runs_and_is_deterministic(tmp_path, tiny_run):
    from vdwstack.core.io import open_image_dataset

    # The session's one local run of the tiny workflow (the SLURM test compares with it), copied:
    # this test changes its sheet and reruns jobs.
    work = tiny_run.copy(tmp_path / "work")
    root, labels = open_image_dataset(work / "results" / "simulations" / "ReS2_slip.zarr")
    imgs = root["images"][:]
    assert imgs.dtype.name == "float32" and imgs.ndim == 3 and imgs.shape[1:] == (48, 48)
    assert len(labels) == imgs.shape[0] > 3
    assert root.attrs["pixel_size_A"] == pytest.approx(0.12)
    assert root.attrs["simulator"]["method"] == "incoherent"
    assert {"Da_A", "Db_A", "theta_deg", "defocus_A", "seed"} <= set(root.attrs["label_columns"])
    assert (work / "results" / "logs" / "simulate" / "ReS2_slip.log").read_text().count("simulate") > 0
    assert (work / "results" / "benchmarks" / "simulate" / "ReS2_slip.tsv").exists()
    card = json.loads((work / "results" / "drit" / "card.json").read_text())
    assert card["training"]["iterations"] == 4 and card["input"]["pixel_size_A"] == pytest.approx(0.12)
    metrics = json.loads((work / "results" / "drit" / "metrics.json").read_text())
    assert {"style_distance", "content_fidelity", "bragg_slip"} <= set(metrics)
    assert (work / "results" / "drit" / "samples" / "final.png").stat().st_size > 1000
    slip = json.loads((work / "results" / "evaluation" / "slip_ReS2.json").read_text())
    assert {"mean", "median", "p95"} <= set(slip["models"]["ReS2_slip"])
    twist = json.loads((work / "results" / "evaluation" / "twist.json").read_text())
    assert "fft_mae_deg" in twist and (work / "results" / "models" / "twist" / "MoS2_twist" / "card.json").exists()
    # Inference and report: one record per sheet row; a row without a model is an error record.
    ok = json.loads((work / "results" / "infer" / "test_style" / "result.json").read_text())
    assert ok["status"] == "ok" and "dD_A" in ok["errors_vs_truth"] and ok["pixel_size_source"] == "metadata"
    tw = json.loads((work / "results" / "infer" / "test_twist" / "result.json").read_text())
    assert tw["status"] == "ok" and "theta_deg" in tw["results"]["twist"]
    none = json.loads((work / "results" / "infer" / "test_unknown_model" / "result.json").read_text())
    assert none["status"] == "ok" and "no trained slip model for 2-layer WS2" in none["results"]["slip"]["message"]
    html = (work / "results" / "report" / "index.html").read_text()
    assert all(i in html for i in ("test_style", "test_twist", "test_unknown_model"))
    # Final readings: every image gets one record holding the answer; without a model, the search alone.
    final = json.loads((work / "results" / "closed_loop" / "test_style" / "reading.json").read_text())
    slip_final = final["results"]["slip"]
    assert final["status"] == "ok" and -1 <= slip_final["agreement"] <= 1 and "uncertainty_A" in slip_final
    assert slip_final["network"]["Da_A"] == ok["results"]["slip"]["Da_A"] and "final_dD_A" in final["errors_vs_truth"]
    assert (work / "results" / "closed_loop" / "test_style" / "comparison.png").stat().st_size > 1000
    assert (work / "results" / "closed_loop" / "test_style" / "model.cif").exists()
    searched = json.loads((work / "results" / "closed_loop" / "test_unknown_model" / "reading.json").read_text())
    if searched["status"] == "ok":
        assert searched["results"]["slip"]["source"] == "search" and searched["results"]["slip"]["network"] is None
    else:  # a ReS2 image read as WS2 may match no WS2 stacking: then it says so, naming the file
        assert searched["status"] == "no_match" and "test_style.tif" in searched["message"]
    assert "How each reading was reached" in html and "Readings" in html
    _assert_incremental_job_lists(work)
    # A new sheet row, for real: only its infer job and the report run.
    sheet = work / "config" / "images.tsv"
    sheet.write_text(sheet.read_text() + NEW_IMAGE_ROW)
    before = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*") if p.is_file()}
    res = _snakemake(work, "--cores", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((work / "results" / "infer" / "test_new" / "result.json").read_text())["status"] == "ok"
    rewritten = {p.relative_to(work / "results").parts[0] for p, t in before.items() if p.stat().st_mtime_ns != t}
    assert rewritten <= {"report", "logs"}, rewritten
    res = _snakemake(work, "--report", str(work / "report.html"))
    assert res.returncode == 0 and (work / "report.html").stat().st_size > 10_000, res.stderr[-2000:]
    # Simulations are deterministic: rerun, they write the same bytes. `--until`: what follows them
    # would only redo the first run's work (the SLURM test checks the whole chain against a second run).
    res = _snakemake(work, "--cores", "2", "--forcerun", "simulate", "--until", "simulate")
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", res.stdout + res.stderr) == ["simulate"] * 2
    root2, _ = open_image_dataset(work / "results" / "simulations" / "ReS2_slip.zarr")
    assert (root2["images"][:] == imgs).all()


def _jobs(work: Path) -> dict[str, str]:
    """Job name -> count of a dry run ({} when nothing is to be done)."""
    res = _snakemake(work, "-n", "--cores", "1", "--quiet", "rules")
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(re.findall(r"^(\w+)\s+(\d+)\s*$", res.stdout, re.M))


def _assert_incremental_job_lists(work: Path) -> None:
    """What a dry run schedules after each kind of change to a finished run (changes are undone)."""
    assert _jobs(work) == {}
    downstream_of_drit = {"drit_train": "1", "synthesize": "2", "train_slip": "1", "train_twist": "1",
                          "evaluate_slip": "1", "evaluate_twist": "1", "infer": "2", "closed_loop": "2", "report": "1",
                          "all": "1"}
    # Touched files with unchanged content (inputs, sheets, scripts, package code): nothing.
    for path in [*(work / "config").iterdir(), *(work / "results" / "pseudo_experimental").iterdir(),
                 *(ROOT / "workflow" / "scripts").iterdir(), *(ROOT / "src" / "vdwstack").glob("*.py")]:
        os.utime(path)
    assert _jobs(work) == {}
    # A new image sheet row: its infer job and the report.
    sheet = work / "config" / "images.tsv"
    original = sheet.read_text()
    sheet.write_text(original + NEW_IMAGE_ROW)
    assert _jobs(work) == {"infer": "1", "closed_loop": "1", "report": "1", "all": "1", "total": "4"}
    sheet.write_text(original)
    # A new style reference: DRIT and everything downstream of it, no simulation.
    refs = work / "config" / "style_references.tsv"
    original = refs.read_text()
    shutil.copy(work / "results" / "pseudo_experimental" / "test_style.tif", work / "second_reference.tif")
    refs.write_text(original + "second\tsecond_reference.tif\tReS2\t0.08\ta second reference\n")
    jobs = _jobs(work)
    assert jobs.pop("total") == str(sum(map(int, downstream_of_drit.values())))
    assert jobs == downstream_of_drit
    refs.write_text(original)
    # A simulation parameter: simulation onwards, not structure enumeration.
    config_file = work / "config" / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    config_file.write_text(yaml.safe_dump(config, sort_keys=True))  # same content, keys reordered
    assert _jobs(work) == {}
    config["simulation"]["per_layer_defocus"] = not config["simulation"].get("per_layer_defocus", True)
    config_file.write_text(yaml.safe_dump(config))
    jobs = _jobs(work)
    jobs.pop("total")
    assert jobs == {"simulate": "2", **downstream_of_drit}
    config_file.write_text(original)
    # Report code: a comment changes nothing; a code change reruns only the report.
    report_py = ROOT / "src" / "vdwstack" / "report" / "stage.py"
    source = report_py.read_text()
    try:
        report_py.write_text(source + "\n# a comment\n")
        assert _jobs(work) == {}
        report_py.write_text(source + "\n_EDITED = True\n")
        assert _jobs(work) == {"report": "1", "all": "1", "total": "2"}
    finally:
        report_py.write_text(source)
    assert _jobs(work) == {}


def _open_objects(node, path="config"):
    """Schema objects that would accept keys nobody declared."""
    if not isinstance(node, dict):
        return []
    found = []
    if (node.get("type") == "object" or "properties" in node) and node.get("additionalProperties", True) is True:
        found.append(path)
    for key, sub in node.get("properties", {}).items():
        found += _open_objects(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        found += _open_objects(node.get(key), f"{path}.{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            found += _open_objects(sub, f"{path}.{key}[{i}]")
    for key, sub in node.get("definitions", {}).items():
        found += _open_objects(sub, f"definitions.{key}")
    return found


def test_every_config_object_in_the_schema_is_closed():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema.get("additionalProperties") is False
    assert _open_objects(schema) == []


def test_unknown_pseudo_experimental_key_is_named(tmp_path):
    config = _tiny_config()
    config["pseudo_experimental"]["test_style"]["microscope"] = {"defocus_A": 20, "defocous_A": 30}
    res = _snakemake(_workdir(tmp_path, config), "-n", "--cores", "1")
    assert res.returncode != 0 and "defocous_A" in res.stdout + res.stderr
