import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    # Two cores: keep intra-op threads at the machine's size and make results independent of it.
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
