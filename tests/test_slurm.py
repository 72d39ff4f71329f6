"""profiles/slurm for real: the tiny workflow through a single-node SLURM cluster on localhost.

ci/slurm_local.sh brings the cluster up (apt-get install of Debian's slurm-wlm + munge when missing),
so this test needs root and apt-get; set VDWSTACK_SKIP_SLURM=1 to skip it. It installs
snakemake-executor-plugin-slurm into the current venv when missing. It takes several minutes: the
SLURM run and the session's local run of the same workflow (for comparison) go side by side.
"""

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "ci" / "slurm_local.sh"
PROFILE = ROOT / "profiles" / "slurm"
PLUGIN = "snakemake-executor-plugin-slurm==2.8.0"  # the version profiles/slurm was tested with
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
# The cluster has no accounting database: sacct exists but fails, and with the plugin's default
# (sacct) Snakemake would wait forever. squeue works. The plugin's wait between status checks starts
# at this value (its default 40 s), starts there again whenever a job finishes, and grows by 10 s after
# every check that finds none finished: the tiny jobs take 1-17 s, so the first wait sets when most are seen done
# (the whole SLURM run 295 s with 5 s, 228 s with 1 s, alone on 2 cores).
SLURM_CI_ARGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1"]
SLURM_RUN_LIMIT_S = 1800  # `timeout -s KILL`: a hung status poll must not hang the suite


def _skip_reason() -> str | None:
    if os.environ.get("VDWSTACK_SKIP_SLURM") == "1":
        return "VDWSTACK_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root to install and start SLURM daemons (ci/slurm_local.sh)"
    if shutil.which("timeout") is None:
        return "needs coreutils timeout"
    installed = all(shutil.which(b) for b in ("slurmctld", "slurmd", "sinfo", "munged"))
    if not installed and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None and sys.prefix == sys.base_prefix:
        return "snakemake-executor-plugin-slurm missing and not in a venv to install it into"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """A running single-node cluster; stopped afterwards if this fixture started it."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", PLUGIN],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"pip install {PLUGIN} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
    already_up = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    if not already_up:
        request.addfinalizer(lambda: subprocess.run(["bash", str(CLUSTER), "down"], timeout=120))
        t0 = time.monotonic()
        res = subprocess.run(["timeout", "-s", "KILL", "600", "bash", str(CLUSTER), "up"],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"ci/slurm_local.sh up failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
        print(f"\ncluster up in {time.monotonic() - t0:.1f} s")
    return True


def _workdir(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    shutil.copytree(ROOT / ".test", work)
    return work


def _keys(obj):
    """The nested key structure of a JSON document (values dropped, list items merged)."""
    if isinstance(obj, dict):
        return {k: _keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        merged = [_keys(v) for v in obj if isinstance(v, (dict, list))]
        return merged[0] if merged else []
    return None


def _sbatch_options(log: str) -> list[str]:
    """The options of every `sbatch call:` in a --verbose log, without the --wrap'ed command."""
    return [c.split(" --wrap=")[0] for c in re.findall(r"sbatch call: (.*)", log)]


def test_tiny_workflow_through_slurm_matches_local_run(tmp_path, slurm_cluster, tiny_run):
    from vdwstack.core.io import open_image_dataset

    slurm = _workdir(tmp_path, "slurm")
    # The session's local run of the same workflow (shared with tests/test_workflow.py) goes
    # alongside when it has not run yet: the SLURM run spends much of its time polling.
    tiny_run.start()
    t0 = time.monotonic()
    res = subprocess.run(
        ["timeout", "-s", "KILL", str(SLURM_RUN_LIMIT_S), *SNAKEMAKE, "-d", str(slurm),
         "--profile", str(PROFILE), *SLURM_CI_ARGS, "--retries", "0", "--verbose"],
        cwd=slurm, capture_output=True, text=True,
    )
    t_slurm = time.monotonic() - t0
    log = res.stdout + res.stderr
    assert res.returncode == 0, f"SLURM run failed (rc {res.returncode}, 137 = killed by timeout):\n{log[-6000:]}"
    local = tiny_run.wait(timeout_s=SLURM_RUN_LIMIT_S)
    t_local = tiny_run.elapsed_s
    print(f"\nSLURM run {t_slurm:.0f} s, local run {t_local:.0f} s (side by side)")

    # Every job but `all` went through sbatch, with the rule's own threads/mem/runtime and no GPU
    # request: the tiny config sets device: cpu everywhere, so the GPU rules have gpu=0.
    calls = _sbatch_options(log)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(calls) == len(submitted) >= 15, log[-4000:]
    assert not [c for c in calls if "--gpus" in c or "--gres" in c], "a CPU-only run asked for GPUs"
    by_rule = {re.search(r"--comment '?rule_(\w+?)(?:_wildcards_|'| )", c).group(1): c for c in calls}
    assert {"structures", "simulate", "drit_train", "synthesize", "train_slip", "train_twist",
            "evaluate_slip", "evaluate_twist", "infer", "report"} <= set(by_rule), sorted(by_rule)
    assert re.search(r"-t 240 --mem 8000 --ntasks=1 --cpus-per-task=2\b", by_rule["drit_train"])
    assert re.search(r"-t 30 --mem 2000 --ntasks=1 --cpus-per-task=1\b", by_rule["structures"])

    # Same results as the local run.
    for ds in ("ReS2_slip", "MoS2_twist"):
        assert (slurm / f"results/structures/{ds}.tsv").read_bytes() == (local / f"results/structures/{ds}.tsv").read_bytes()
        r_s, lab_s = open_image_dataset(slurm / f"results/simulations/{ds}.zarr")
        r_l, lab_l = open_image_dataset(local / f"results/simulations/{ds}.zarr")
        a, b = r_s["images"][:], r_l["images"][:]
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), ds
        assert lab_s.equals(lab_l) and dict(r_s.attrs) == dict(r_l.attrs), ds
    for name in ("slip_ReS2.json", "twist.json"):
        ev_s = json.loads((slurm / "results/evaluation" / name).read_text())
        ev_l = json.loads((local / "results/evaluation" / name).read_text())
        assert _keys(ev_s) == _keys(ev_l), name
    assert set(json.loads((slurm / "results/drit/metrics.json").read_text())) == set(
        json.loads((local / "results/drit/metrics.json").read_text()))
    image_ids = [line.split("\t")[0] for line in (ROOT / ".test/config/images.tsv").read_text().splitlines()[1:] if line]
    assert len(image_ids) == 3
    for image in image_ids:
        rs = json.loads((slurm / f"results/infer/{image}/result.json").read_text())
        rl = json.loads((local / f"results/infer/{image}/result.json").read_text())
        assert rs["status"] == rl["status"] and set(rs) == set(rl), image
        assert (slurm / f"results/infer/{image}/maps.npz").exists()
    assert (slurm / "results/report/index.html").stat().st_size > 1000

    # gpu=1 maps to `--gpus=1` (and no --ntasks). Checked with an sbatch stub that records its
    # arguments and refuses the job: this cluster has no GPU, so a real sbatch would reject it.
    stub_dir, record = tmp_path / "stub", tmp_path / "sbatch_args.txt"
    stub_dir.mkdir()
    stub = stub_dir / "sbatch"
    stub.write_text("#!/bin/sh\n"  # one line per call
                    f"printf '%s' \"$*\" | tr '\\n' ' ' >> '{record}'; echo >> '{record}'\n"
                    "echo 'stub: not submitted' >&2\nexit 1\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    config = yaml.safe_load((slurm / "config/config.yaml").read_text())
    config["drit"]["device"] = "cuda"
    # sort_keys=False: Snakemake compares dict params in order, a re-sorted config reruns everything
    (slurm / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(
        ["timeout", "-s", "KILL", "300", *SNAKEMAKE, "-d", str(slurm), "--profile", str(PROFILE), *SLURM_CI_ARGS,
         "--retries", "0", "--rerun-triggers", "mtime", "--forcerun", "drit_train", "--until", "drit_train"],
        cwd=slurm, env=env, capture_output=True, text=True,
    )
    args = [a.split(" --wrap=")[0] for a in record.read_text().splitlines()] if record.exists() else []
    assert res.returncode != 0 and len(args) == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "--comment rule_drit_train" in args[0] and "--gpus=1" in args[0] and "--ntasks" not in args[0], args[0]
    assert "--cpus-per-task=2" in args[0], args[0]
