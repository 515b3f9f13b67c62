import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
# The authors' golden outputs, kept in the repository so that every clone runs the fidelity tests.
REFERENCE = REPO / "tests" / "fixtures" / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _cache_home(tmp_path_factory):
    # Caches (cut event samples) go to the user's cache folder; keep the tests' out of the real one.
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def pytest_configure(config):
    # Two cores: keep intra-op threads at the machine's size and make results independent of it.
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
