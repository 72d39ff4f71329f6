"""Killed work: training resumes from its last checkpoint, a killed simulation leaves no dataset.

Each test runs the real code in a child process, kills it with SIGKILL (what a node failure, an
out-of-memory kill or a SLURM time limit does: no clean-up code runs) and starts the work again.
"""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vdwstack.core.torch_utils import load_weights_only
from vdwstack.core.io import open_image_dataset, write_image_dataset
from vdwstack.simulate.render import simulate_rows
from vdwstack.structures.enumeration import enumerate_dataset, write_table

TESTS = Path(__file__).resolve().parent


def _start(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=TESTS, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout_s: float = 120) -> None:
    """SIGKILL the child (and anything it started) as soon as `ready()` is true."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"child ended before it could be killed: {proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout_s:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _rows(csv_path: Path) -> np.ndarray:
    return np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=0, ndmin=1)


@pytest.fixture(scope="module")
def slip_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    spec = {"material": "ReS2", "slip_step_A": 1.5, "pixel_size_A": 0.12, "image_size_px": 48}
    table = enumerate_dataset("ReS2_slip", spec, seed=3)
    write_image_dataset(base / "slip.zarr", table, [(0, simulate_rows(table.to_dict("records")))], {"dataset": "s"})
    return base / "slip.zarr"


SETTINGS = {"architecture": "resnet18", "crop_px": 32, "batch_size": 2, "steps": 60, "lr": 1e-3,
            "warmup_steps": 2, "checkpoint_every": 5, "device": "cpu", "augment": False}


def test_killed_regressor_training_resumes_from_its_checkpoint(slip_set, tmp_path, caplog):
    from vdwstack.regress.stage import train_from_dataset

    out = tmp_path / "model"
    child = _start(f"""
        from vdwstack.regress.stage import train_from_dataset
        train_from_dataset({str(slip_set)!r}, {SETTINGS!r}, "slip", {str(out)!r}, progress=False)
    """)
    ckpt = out / "checkpoints" / "last.pt"
    _kill_when(child, ckpt.exists)
    assert not (out / "model.safetensors").exists()
    killed_at = int(load_weights_only(ckpt)["step"])  # the checkpoint is whole (written, then renamed)
    assert 5 <= killed_at < SETTINGS["steps"]
    assert not list(out.glob("checkpoints/*.tmp"))
    with caplog.at_level(logging.INFO, logger="vdwstack.regress.training"):
        card = train_from_dataset(slip_set, SETTINGS, "slip", out, progress=False)
    assert f"at step {killed_at}" in caplog.text  # resumed, not restarted
    assert card["training"]["steps"] == SETTINGS["steps"]
    # One loss row per step, none lost or repeated across the kill.
    assert (_rows(out / "losses.csv") == np.arange(1, SETTINGS["steps"] + 1)).all()


def test_killed_drit_training_resumes_from_its_checkpoint(tmp_path, caplog):
    from test_drit import ARCH, _sampler

    from vdwstack.drit.training import DritConfig, train

    out = tmp_path / "drit"
    cfg = dict(iterations=16, crop_px=32, batch_size=1, checkpoint_every=4, sample_every=1000)
    child = _start(f"""
        from test_drit import ARCH, _sampler
        from vdwstack.drit.training import DritConfig, train
        train(_sampler(), DritConfig(**{cfg!r}, architecture=ARCH), {str(out)!r}, 0.1, progress=False)
    """)
    ckpt = out / "checkpoints" / "last.pt"
    _kill_when(child, ckpt.exists)
    killed_at = int(load_weights_only(ckpt)["iteration"])
    assert 4 <= killed_at < cfg["iterations"]
    with caplog.at_level(logging.INFO, logger="vdwstack.drit.training"):
        trainer = train(_sampler(), DritConfig(**cfg, architecture=ARCH), out, 0.1, progress=False)
    assert f"at iteration {killed_at}" in caplog.text and trainer.iteration == cfg["iterations"]
    assert (_rows(out / "losses.csv") == np.arange(1, cfg["iterations"] + 1)).all()


def test_killed_simulation_leaves_no_dataset_and_reruns_identically(tmp_path):
    spec = {"material": "MoS2", "twist_deg": list(range(0, 60, 2)), "pixel_size_A": 0.1, "image_size_px": 128}
    table = enumerate_dataset("MoS2_twist", spec, seed=5)
    write_table(table, tmp_path / "table.tsv")
    def script(out):
        return textwrap.dedent(f"""
            from vdwstack.simulate.stage import simulate_table_to_zarr
            simulate_table_to_zarr({str(tmp_path / "table.tsv")!r}, {str(out)!r}, {{"batch_size": 1}})
        """)

    out = tmp_path / "sims.zarr"
    partial = tmp_path / "sims.zarr.partial"
    child = _start(script(out))
    # Killed while images are being written: the chunk files of the first images exist.
    _kill_when(child, lambda: partial.exists() and len(list(partial.rglob("c/*"))) >= 2)
    assert partial.exists() and not out.exists()
    with pytest.raises(FileNotFoundError, match="sims.zarr: no such image dataset"):
        open_image_dataset(out)  # what a later stage sees: nothing, not a truncated dataset
    for path in (out, tmp_path / "uninterrupted.zarr"):
        done = subprocess.run([sys.executable, "-c", script(path)], cwd=TESTS, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert not partial.exists()
    root, labels = open_image_dataset(out)
    reference, _ = open_image_dataset(tmp_path / "uninterrupted.zarr")
    assert len(labels) == len(table)
    np.testing.assert_array_equal(root["images"][:], reference["images"][:])  # bit-identical
