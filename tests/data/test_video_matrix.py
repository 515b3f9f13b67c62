"""The reader on files written by FFmpeg's own encoders and muxers, each checked frame by frame against
sequential decoding and against the number every frame carries, with and without seeking."""
from fractions import Fraction

import numpy as np
import pytest

import svformer.data.video as video
from svformer.data import VideoError, VideoReader
from svformer.data.sampling import RandomClipSampler, UniformClipSampler

from .encode import decode_sequentially, encode, frame_number

N = 120  # long enough for reads that seek past several keyframes (gop 12)
VFR = [0] + list(np.cumsum([[20, 40, 80, 33][i % 4] for i in range(N - 1)]))

MATRIX = {
    "mpeg4_avi": ("v.avi", dict(codec="mpeg4", b_frames=0)),
    "mpeg4_b_frames_avi": ("v.avi", dict(codec="mpeg4", b_frames=2)),
    "h264_b_frames_mp4": ("v.mp4", dict(codec="libx264", b_frames=3)),
    "h264_b_frames_mkv": ("v.mkv", dict(codec="libx264", b_frames=3)),
    "h264_mpegts_start_time": ("v.ts", dict(codec="libx264", b_frames=3)),
    "start_time_mkv": ("v.mkv", dict(codec="libx264", b_frames=2, pts=[1000 + 40 * i for i in range(N)],
                                     time_base=Fraction(1, 1000))),
    "start_time_mp4": ("v.mp4", dict(codec="libx264", b_frames=2, pts=[1000 + 40 * i for i in range(N)],
                                     time_base=Fraction(1, 1000))),
    "vfr_mkv": ("v.mkv", dict(codec="libx264", b_frames=2, pts=VFR, time_base=Fraction(1, 1000))),
    "vfr_mp4": ("v.mp4", dict(codec="libx264", b_frames=2, pts=VFR, time_base=Fraction(1, 1000))),
    "vfr_mpeg4_avi_gaps": ("v.avi", dict(codec="mpeg4", b_frames=2, pts=[i + i // 5 for i in range(N)],
                                         time_base=Fraction(1, 25))),
    "odd_size_h264_444": ("v.mkv", dict(codec="libx264", size=(27, 35), pix_fmt="yuv444p")),
    "odd_size_mjpeg_avi": ("v.avi", dict(codec="mjpeg", size=(27, 35), pix_fmt="yuvj444p")),
    "audio_first_mp4": ("v.mp4", dict(codec="libx264", b_frames=3, audio_first=True)),
    "audio_first_mkv": ("v.mkv", dict(codec="mpeg4", b_frames=2, audio_first=True)),
    "gray_ffv1": ("v.mkv", dict(codec="ffv1", pix_fmt="gray")),
    "yuv444_h264": ("v.mp4", dict(codec="libx264", b_frames=3, pix_fmt="yuv444p")),
}


@pytest.fixture(scope="module", params=sorted(MATRIX))
def case(request, tmp_path_factory):
    name, kwargs = MATRIX[request.param]
    path = tmp_path_factory.mktemp(request.param) / name
    encode(path, num_frames=N, **kwargs)
    return path, decode_sequentially(path)


def test_every_frame_in_presentation_order(case):
    path, sequential = case
    assert [frame_number(f) for f in sequential] == list(range(N)), "the writer or FFmpeg misnumbered frames"
    with VideoReader(path) as r:
        assert len(r) == N
        frames = r.read_all()
    assert all(np.array_equal(a, b) for a, b in zip(frames, sequential))


@pytest.mark.parametrize("seek", [True, False])
def test_sampled_reads_equal_sequential_decoding(case, seek, monkeypatch):
    path, sequential = case
    if not seek:
        monkeypatch.setattr(video, "SEEK_THRESHOLD", 10**9)
    reads = [[N - 1, 0, 57, 57, 13], [100, 101, 119], [60, 64, 68, 72], [49], list(range(70, 86))]
    with VideoReader(path) as r:
        decodes = []
        original = r._decode
        r._decode = lambda wanted, seek_to: decodes.append(seek_to) or original(wanted, seek_to)
        for indices in reads:
            got = r.read(indices)
            for i, frame in zip(indices, got):
                assert np.array_equal(frame, sequential[i]), f"frame {i} differs from sequential decoding"
                assert frame_number(frame) == i
    sought = [t for t in decodes if t is not None]
    if seek:
        # every read starting past the threshold seeks, and none needs the from-the-start fallback
        assert len(sought) == 4 and decodes.count(None) == 1
    else:
        assert not sought


def test_random_and_test_clips(case):
    path, sequential = case
    rng = np.random.default_rng(0)
    with VideoReader(path) as r:
        specs = RandomClipSampler(16, 4)(len(r), rng) + UniformClipSampler(16, 4, 5, 3)(len(r))
        for spec in specs:
            got = r.read(spec.indices)
            assert [frame_number(f) for f in got] == list(spec.indices)


def test_video_shorter_than_a_clip_window(tmp_path):
    path = tmp_path / "short.avi"
    encode(path, codec="mpeg4", b_frames=2, num_frames=10)
    with VideoReader(path) as r:
        assert len(r) == 10
        for spec in RandomClipSampler(16, 4)(len(r)) + UniformClipSampler(16, 4, 5, 3)(len(r)):
            assert max(spec.indices) == 9 and min(spec.indices) == 0  # the window is clamped to the video
            assert [frame_number(f) for f in r.read(spec.indices)] == list(spec.indices)


def _damaged(tmp_path, name, kind):
    path = tmp_path / name
    encode(path, codec="mpeg4", b_frames=2, num_frames=120)
    data = bytearray(path.read_bytes())
    if kind == "cut":
        data = data[: int(len(data) * 0.6)]
    else:
        start = len(data) // 2
        data[start:start + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    out = tmp_path / f"{kind}_{name}"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("kind", ["cut", "garbled"])
def test_damaged_files_name_the_file_and_frame(tmp_path, kind):
    path = _damaged(tmp_path, "v.avi", kind)
    with VideoReader(path) as r:
        assert [frame_number(f) for f in r.read([0, 5])] == [0, 5]  # the good part reads
        with pytest.raises(VideoError, match=rf"{kind}_v.avi: .*frame \d+"):
            r.read_all()
        with pytest.raises(VideoError, match=rf"{kind}_v.avi: .*frame \d+"):
            r.verify()


def test_header_frame_count_larger_than_the_file(tmp_path):
    import av

    path = _damaged(tmp_path, "v.avi", "cut")  # a download cut short: the header still says 120
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == N
    sequential = []
    with pytest.raises(av.error.InvalidDataError):  # FFmpeg itself stops at the cut
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                sequential.append(f.to_ndarray(format="rgb24"))
    with VideoReader(path) as r:
        assert r.header_frames == N and len(sequential) <= len(r) < N
        good = len(sequential) - 1
        got = r.read([good, 0, good // 2])
    assert [frame_number(f) for f in got] == [good, 0, good // 2]
    assert np.array_equal(got[0], sequential[good])
