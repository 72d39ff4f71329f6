import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_structures() -> Path:
    path = SHARED / "structures"
    if not path.is_dir():
        pytest.skip("../shared/data/structures not present")
    return path


class TinyRun:
    """One local run of the tiny workflow (`.test`), shared by the tests that need a finished run.

    It starts at most once per session, in the background (`start`), so that the SLURM test can run
    its cluster run beside it; `wait` returns the finished work folder. The folder is the reference
    the SLURM run is compared with: a test that changes a run works on a `copy`.
    """

    def __init__(self, base: Path):
        self.work = base / "work"
        self.log = base / "run.log"
        self.elapsed_s: float | None = None
        self._proc: subprocess.Popen | None = None
        self._t0 = 0.0

    def start(self) -> None:
        if self._proc is not None:
            return
        shutil.copytree(ROOT / ".test", self.work)
        self._t0 = time.monotonic()
        with self.log.open("w") as fh:  # a file, not a pipe: nobody reads it until the run ends
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(self.work),
                 "--cores", "2"], cwd=self.work, stdout=fh, stderr=subprocess.STDOUT)
        # Its wall time, taken when it ends (the SLURM test reports both runs' times).
        self._timer = threading.Thread(target=self._time_it, daemon=True)
        self._timer.start()

    def _time_it(self) -> None:
        self._proc.wait()
        self.elapsed_s = time.monotonic() - self._t0

    def wait(self, timeout_s: float = 900) -> Path:
        self.start()
        rc = self._proc.wait(timeout=timeout_s)
        self._timer.join()
        assert rc == 0, f"the tiny workflow run failed (rc {rc}):\n{self.log.read_text()[-4000:]}"
        return self.work

    def copy(self, dest: Path) -> Path:
        """The finished run copied to `dest`, file times kept (so Snakemake sees it finished)."""
        shutil.copytree(self.wait(), dest, symlinks=True)
        return dest

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    run = TinyRun(tmp_path_factory.mktemp("tiny_run"))
    yield run
    run.stop()
