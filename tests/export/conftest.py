"""A trained tiny checkpoint and its two ONNX exports, shared by the export and streaming tests."""
import contextlib
import io

import pytest

from svformer.cli import main


@pytest.fixture(scope="package")
def trained_run(tmp_path_factory):
    from ..engine.test_training import tiny_config
    from svformer.engine.trainer import train

    tmp = tmp_path_factory.mktemp("export_run")
    train(tiny_config(tmp, "run", **{"data.test_clips": 1, "optim.epochs": 2}), test=False)
    ckpt = tmp / "run" / "last.pt"
    clip, step = tmp / "clip.onnx", tmp / "step.onnx"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # export, then compare on the checkpoint's 20 test clips
        assert main(["export", str(ckpt), "--out", str(clip), "--verify", "50"]) == 0
    assert main(["export", str(ckpt), "--out", str(step), "--kind", "stream"]) == 0
    return tmp, ckpt, clip, step, out.getvalue()
