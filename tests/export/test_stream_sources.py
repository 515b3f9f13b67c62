"""`svformer stream` on sources that are not files: a named pipe fed in real time by another process
(FFmpeg's muxer, through PyAV) and stopped with Ctrl-C or SIGTERM, standard input, and an HTTP URL.
Each gives the clips that the same frames in a file give."""
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from svformer.cli import main  # noqa: E402
from svformer.engine.predict import load_classifier  # noqa: E402
from svformer.engine.stream import stream_frames  # noqa: E402

from ..data.encode import encode  # noqa: E402


def write_live(target, frames: int, stop: threading.Event) -> None:
    """Lossless frames 0..``frames``-1 (FFV1 in NUT) into ``target`` at 25 fps, as a camera would; a
    reader that goes away ends the writing."""
    import av

    try:
        encode(target, "ffv1", frames, pix_fmt="yuv444p", container_format="nut",
               container_options={"flush_packets": "1"}, pace=0.04, stop=stop)
    except (OSError, av.FFmpegError):
        pass  # the reader stopped


def write_file(path, frames: int, fmt: str) -> None:
    """The same frames, in a file."""
    encode(path, "ffv1", frames, pix_fmt="yuv444p", container_format=fmt)


def file_clips(model, path, windows: int):
    clf = load_classifier(str(model))
    clips = [clip for _, clip in stream_frames(clf, str(path), topk=3) if clip is not None]
    assert len(clips) >= windows
    return clips[:windows]


def assert_same_clips(got: list, want: list) -> None:
    assert [tuple(c["frames"]) for c in got] == [c.frames for c in want]
    for g, w in zip(got, want):
        assert [name for name, _ in g["top"]] == [name for name, _ in w.top]
        assert np.allclose([p for _, p in g["top"]], [p for _, p in w.top], atol=1e-6)


@pytest.fixture(autouse=True)
def default_sigint():
    """Ctrl-C as a fresh interpreter has it: a process started with SIGINT ignored passes that on to its
    children (and svformer keeps it ignored, as shells expect of background jobs), and a test elsewhere
    in the session may leave this process so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def svformer(*args, **kwargs) -> subprocess.Popen:
    """`svformer ARGS` in a child process; with faulthandler on, so that SIGABRT dumps where its threads are
    (`finish`)."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, "-m", "svformer", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def finish(proc: subprocess.Popen, timeout: float):
    """``proc.communicate(timeout)``; a child still running then is aborted and the test fails with its
    threads' stacks (faulthandler's dump on SIGABRT)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        pytest.fail(f"svformer still running after {timeout} s; its stacks:\n{err[-6000:]}\n"
                    f"its last output:\n{out[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_live_pipe_stops_on_signal_with_report_and_json(trained_run, tmp_path, sig):
    _, _, _, step, _ = trained_run
    fifo, out_json = tmp_path / "camera", tmp_path / "live.json"
    os.mkfifo(fifo)
    stop = threading.Event()
    writer = threading.Thread(target=write_live, args=(fifo, 2000, stop))  # 80 s of "camera"
    writer.start()
    proc = svformer("stream", step, fifo, "--json", out_json, "--topk", "3")
    try:
        lines = []
        for line in proc.stdout:  # the window is 8 frames (T=4, sampling rate 2): stop within the third
            lines.append(line)
            if line.startswith("clip 1 "):
                break
        proc.send_signal(sig)
        rest, err = finish(proc, 60)
    finally:
        stop.set()
        proc.kill()
        writer.join()
    printed = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert "stopped after" in printed and "latency per frame: median" in printed, printed
    data = json.loads(out_json.read_text())
    assert data["source"] == str(fifo) and len(data["frames"]) >= 8 and len(data["clips"]) >= 2
    assert [f["step"] for f in data["frames"][:8]] == [0, 1, 2, 3] * 2
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # the parts are cleaned up

    video = tmp_path / "same.mkv"
    write_file(video, 16, "matroska")
    assert_same_clips(data["clips"][:2], file_clips(step, video, 2))


def test_standard_input_and_http_url(trained_run, tmp_path, capsys):
    _, ckpt, _, step, _ = trained_run
    video = tmp_path / "clip.nut"
    write_file(video, 24, "nut")
    want = file_clips(ckpt, video, 3)

    with open(video, "rb") as f:  # a pipe: not seekable, like a capture tool's output
        proc = svformer("stream", ckpt, "-", "--json", tmp_path / "stdin.json", "--topk", "3", stdin=f)
        _, err = finish(proc, 120)
    assert proc.returncode == 0, err
    data = json.loads((tmp_path / "stdin.json").read_text())
    assert data["source"] == "-" and len(data["frames"]) == 12
    assert_same_clips(data["clips"], want)

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.nut"
        assert main(["stream", str(step), url, "--json", str(tmp_path / "url.json"), "--topk", "3"]) == 0
        assert_same_clips(json.loads((tmp_path / "url.json").read_text())["clips"], want)
        capsys.readouterr()
        with pytest.raises(SystemExit, match=r"^svformer stream: http://127\.0\.0\.1:\d+/missing\.nut: cannot be opened "
                                             r"as video \(.*\)$"):
            main(["stream", str(step), url.replace("clip", "missing")])
    finally:
        server.shutdown()
        server.server_close()


def test_standard_input_that_is_a_terminal_is_a_one_line_error(trained_run):
    _, _, _, step, _ = trained_run
    primary, secondary = os.openpty()  # a terminal: nothing was piped in
    try:
        proc = svformer("stream", step, "-", stdin=secondary)
        _, err = finish(proc, 120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode != 0
    assert err.strip() == ("svformer stream: standard input is a terminal: pipe a video into it "
                           "(e.g. ffmpeg ... -f nut - | svformer stream MODEL -)")


def test_a_signal_the_decoder_swallows_still_stops_the_stream(trained_run, tmp_path, monkeypatch):
    """C code the stream is in when a signal arrives may swallow the KeyboardInterrupt its handler raises;
    the handler's flag then stops the stream at the next frame, with the usual report."""
    import svformer.engine.stream as engine_stream

    _, _, _, step, _ = trained_run
    video = tmp_path / "long.nut"
    write_file(video, 64, "nut")
    real = engine_stream.stream_frames

    def swallowing(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 5:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.5)  # the handler runs here and its exception is lost, as in C code
                except KeyboardInterrupt:
                    pass
            yield item

    monkeypatch.setattr(engine_stream, "stream_frames", swallowing)
    lines = []
    engine_stream.run_stream(str(step), str(video), print_fn=lines.append)
    assert "stopped after 5 model steps" in lines, lines[-12:]  # the frame the signal came in is not used
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_sigint_ignored_at_start_stays_ignored():
    """A background job of a shell script starts with SIGINT ignored, so that Ctrl-C stops the script
    only; the stream leaves it so (and handles SIGTERM)."""
    from svformer.engine.stream import _stop_on_signals

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _stop_on_signals() as requested:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and requested == [False]
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
