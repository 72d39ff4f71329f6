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
