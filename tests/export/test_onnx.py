"""ONNX export: the inference graph equals the model, ONNX Runtime equals PyTorch (the authors' golden
fixture and a trained checkpoint), the step model after T frames equals the clip model, and the
predict/stream/export commands work on both kinds of file."""
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from svformer import SVFormer, StreamingSVFormer  # noqa: E402
from svformer.cli import main  # noqa: E402
from svformer.engine.predict import predict_file  # noqa: E402
from svformer.export import export_onnx, inference_model, read_metadata  # noqa: E402
from svformer.export.graph import inference_multistep  # noqa: E402
from svformer.export.runtime import OnnxSVFormer  # noqa: E402
from svformer.export.verify import compare  # noqa: E402
from svformer.snn import Dynamics, TimeBatchNorm, get_surrogate, reference_multistep  # noqa: E402

from ..golden import golden_model, load_golden  # noqa: E402


def rel_error(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).sum() / np.abs(b).sum()


@pytest.mark.parametrize("kind,v_reset,decay_input", [("plif", 0.0, True), ("plif", None, True), ("lif", 0.0, False),
                                                      ("lif", -0.2, True), ("if", 0.0, True), ("if", None, True)])
def test_inference_neuron_equals_reference_bit_for_bit(kind, v_reset, decay_input):
    dyn = Dynamics(kind, v_threshold=0.7, v_reset=v_reset, detach_reset=True, decay_input=decay_input, tau=3.0)
    x = torch.randn(12, 4, 257) * 2
    v0 = torch.full((4, 257), dyn.reset_value)
    k = torch.tensor(0.37) if kind == "plif" else None
    want = reference_multistep(dyn, get_surrogate("atan"), x, v0, k)
    got = inference_multistep(dyn, None, x, v0, k)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert want[0].sum() > 0 and (want[0] == 0).sum() > 0  # both cases happen


def trained(model, steps=3, batch=2):
    """BatchNorm statistics and affine parameters that are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(batch, model.in_chans, model.num_frames, *model.img_size))
        for m in model.modules():
            if isinstance(m, (TimeBatchNorm, torch.nn.BatchNorm3d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("norm,head", [("per_step", "conv3d"), ("shared", "avgpool"), ("shared", "conv3d")])
def test_inference_graph_folds_norms_and_equals_model(norm, head):
    model = trained(SVFormer(num_classes=5, img_size=64, num_frames=4, embed_dim=(8, 16, 24, 32), depth=(1, 1, 1, 1),
                             head_dim=8, norm=norm, head=head))
    graph = inference_model(model)
    assert not any(isinstance(m, (TimeBatchNorm, torch.nn.BatchNorm3d)) for m in graph.modules())
    assert not any(p.requires_grad for p in graph.parameters())
    x = torch.randn(3, 3, 4, 64, 64)
    with torch.no_grad():
        want, got = model(x), graph(x)
    # Folding a shared BN into the layer in front rounds differently; per-step constants do not.
    assert rel_error(got, want) <= (1e-6 if norm == "per_step" else 1e-4)
    assert model.training is False and any(isinstance(m, TimeBatchNorm) for m in model.modules())  # untouched


@pytest.fixture(scope="module")
def golden_exports(tmp_path_factory):
    golden = load_golden()
    model = golden_model(golden).eval()
    folder = tmp_path_factory.mktemp("golden_onnx")
    clip = export_onnx(model, str(folder / "clip.onnx"), class_names=list("abcde"))
    step = export_onnx(model, str(folder / "step.onnx"), kind="stream", class_names=list("abcde"))
    return golden, model, clip, step


def test_golden_clip_export_matches_the_authors_logits(golden_exports):
    golden, model, clip, _ = golden_exports
    onnx_model = OnnxSVFormer(clip)
    assert (onnx_model.kind, onnx_model.num_frames, onnx_model.img_size, onnx_model.class_names) == \
        ("clip", 4, (64, 64), list("abcde"))
    logits = onnx_model(golden["input"])
    assert rel_error(logits, golden["logits_eval"]) <= 1e-4
    assert torch.equal(logits.argmax(-1), golden["logits_eval"].argmax(-1))
    meta = read_metadata(clip)
    assert meta["version"] and meta["mean"] == [0.45] * 3 and meta["config"] == {}


def test_golden_spikes_agree_layer_by_layer(golden_exports, monkeypatch):
    golden, model, _, _ = golden_exports
    report = compare(model, golden["input"])
    assert report["top1_agreement"] == 1.0 and report["logits_rel_error"] <= 1e-4
    assert report["clips_within_1e-4"] == 1.0
    assert report["clip_rel_error_median"] <= report["clip_rel_error_max"] <= 1e-4
    assert len(report["layers"]) == 32 and report["total_spikes"] > 0  # 3 SABlocks x 7 + 2 CBlocks x 3 + 5
    # Spikes may flip only where rounding decides: a handful in a million, started within 1e-4 of threshold.
    assert report["total_flips"] <= 1e-4 * report["total_spikes"]
    assert report["first_flip_margin"] is None or report["first_flip_margin"] <= 1e-4
    for key in ("pytorch_rel_error_vs_float64", "onnx_rel_error_vs_float64"):  # float32 rounding: small, not 0
        assert 0 < report[key] <= 1e-4

    exact = compare(model, golden["input"], dtype=torch.float64)  # rounding out of the way: the graph itself
    assert exact["logits_rel_error"] <= 1e-13 and exact["total_flips"] == 0 and exact["top1_agreement"] == 1.0
    assert exact["total_spikes"] == report["total_spikes"] and exact["pytorch_rel_error_vs_float64"] == 0
    with pytest.raises(ValueError, match="compare runs in torch.float32 or torch.float64, not torch.float16"):
        compare(model, golden["input"], dtype=torch.float16)

    import svformer.export.verify as verify

    monkeypatch.setattr(verify, "SPIKE_BYTES", 1)  # a large model's chunks: one clip per run, the same report
    single = compare(model, golden["input"], dtype=torch.float64)
    assert single["total_spikes"] == exact["total_spikes"] and single["clips"] == 2
    assert single["logits_rel_error"] <= 1e-13 and single["layers"] == exact["layers"]


def test_step_export_after_T_frames_equals_clip_export(golden_exports):
    golden, model, clip, step = golden_exports
    x = torch.cat([golden["input"], torch.randn(1, 3, 4, 64, 64)])  # any batch size
    clip_logits = OnnxSVFormer(clip)(x)
    stepper = OnnxSVFormer(step)
    stream, torch_stream = stepper.streamer(), StreamingSVFormer(model)
    for t in range(4):
        logits = stream.step(x[:, :, t])
        torch_logits = torch_stream.step(x[:, :, t])
        assert rel_error(logits, torch_logits) <= 1e-4, t  # the running result, step by step
    assert rel_error(logits, clip_logits) <= 1e-5
    assert rel_error(stepper(x), clip_logits) <= 1e-5  # a step model also classifies whole clips
    with pytest.raises(ValueError, match="clips of 4 frames; call reset"):
        stream.step(x[:, :, 0])
    stream.reset()
    stream.step(x[:, :, 0])
    stream.step(x[:, :, 1])
    with pytest.raises(ValueError, match=rf"started with {len(x)} frame\(s\) per step, got 1; call reset"):
        stream.step(x[:1, :, 2])  # mid-clip, another batch size
    stream.reset()  # mid-clip: the next clip starts from the reset states
    again = [stream.step(x[:, :, t]) for t in range(4)][-1]
    assert torch.equal(again, logits)  # (each result is the caller's own tensor, not a reused buffer)
    stream.reset()  # another batch size
    single = [stream.step(x[:1, :, t]) for t in range(4)][-1]
    assert rel_error(single, clip_logits[:1]) <= 1e-5
    with pytest.raises(ValueError, match="whole-clip model; export a step model"):
        OnnxSVFormer(clip).streamer()
    with pytest.raises(ValueError, match=r"classifies clips of shape \(B, 3, 4, 64, 64\)"):
        OnnxSVFormer(clip)(x[:, :, :3])


def test_trained_checkpoint_exports_agree_on_every_test_clip(trained_run):
    from svformer.config import from_dict
    from svformer.engine.predict import load_trained

    tmp, ckpt, clip, _, printed = trained_run
    line = re.search(r"ONNX Runtime vs PyTorch on (\d+) test clips: top-1 agreement ([\d.]+) %, logits mean relative "
                     r"error ([\d.e+-]+) \(clip by clip: median ([\d.e+-]+), largest ([\d.e+-]+), ([\d.]+) % of clips "
                     r"within 1e-4\), (\d+) of (\d+) spikes differ", printed)
    assert line, printed
    clips, top1, error, median, largest, within, flips, spikes = line.groups()
    assert int(clips) == 20 and float(top1) >= 99 and float(error) <= 1e-4 and int(flips) <= 1e-4 * int(spikes)
    assert float(median) <= float(largest) and float(within) >= 99
    exact = re.search(r"the same graph in float64 \(convolutions as matrix products\): top-1 agreement ([\d.]+) %, "
                      r"logits mean relative error ([\d.e+-]+) \(largest clip ([\d.e+-]+)\), (\d+) of (\d+) spikes "
                      r"differ", printed)
    assert exact, printed
    top1, error, largest, flips, total = exact.groups()
    assert float(top1) == 100 and float(error) <= 1e-13 and float(largest) <= 1e-13
    assert int(flips) == 0 and int(total) == int(spikes)
    _, cfg, names = load_trained(str(ckpt))
    meta = read_metadata(str(clip))
    assert meta["class_names"] == names and from_dict(meta["config"]) == cfg


def test_predict_and_stream_with_checkpoint_and_onnx(trained_run, capsys):
    tmp, ckpt, clip, step, _ = trained_run
    video = sorted((tmp / "data" / "UCF-101" / "Still").iterdir())[0]  # 8 frames: one window of 4 x 2
    results = {str(m): predict_file(str(m), str(video), topk=3) for m in (ckpt, clip, step)}
    want = results[str(ckpt)]
    for top in results.values():
        assert [name for name, _ in top] == [name for name, _ in want]
        assert np.allclose([p for _, p in top], [p for _, p in want], atol=1e-5)
    assert main(["predict", str(clip), str(video), "--topk", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3

    for model, extra in ((ckpt, []), (step, []), (ckpt, ["--compile"])):  # eager, ONNX Runtime, compiled
        out_json = tmp / f"stream_{model.stem}{len(extra)}.json"
        assert main(["stream", str(model), str(video), "--every", "2", "--topk", "3", "--json", str(out_json),
                     *extra]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[0].startswith("compiling the step model") == bool(extra)
        assert sum(line.startswith("frame") for line in out) == 2  # 4 steps, every 2nd printed
        assert any(line.startswith("clip 0 (frames 0-7)") for line in out)
        assert "latency per frame: median" in "\n".join(out)
        final = [line.split(None, 1) for line in out[-3:]]
        assert [name for _, name in final] == [name for name, _ in want]  # predict's single view
        assert np.allclose([float(p[:-1]) / 100 for p, _ in final], [p for _, p in want], atol=1e-4)
        data = json.loads(out_json.read_text())
        assert [f["step"] for f in data["frames"]] == [0, 1, 2, 3] and len(data["clips"]) == 1
        assert data["clips"][0]["frames"] == [0, 2, 4, 7]  # the test sampler's frames of the window


def test_export_and_stream_errors(trained_run, tmp_path):
    tmp, ckpt, clip, step, _ = trained_run
    video = sorted((tmp / "data" / "UCF-101" / "Still").iterdir())[0]
    with pytest.raises(SystemExit, match=r"^svformer export: NIR export is not possible for SVFormer: .*self-attention"):
        main(["export", str(ckpt), "--format", "nir", "--out", str(tmp_path / "m.nir")])
    with pytest.raises(SystemExit, match=r"^svformer stream: .*clip.onnx is a whole-clip model"):
        main(["stream", str(clip), str(video)])
    with pytest.raises(SystemExit, match=r"^svformer stream: .*step.onnx: compiling applies to checkpoints"):
        main(["stream", str(step), str(video), "--compile"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(SystemExit, match=r"^svformer predict: .*junk.onnx: not a readable ONNX file"):
        main(["predict", str(junk), str(video)])
    with pytest.raises(SystemExit, match=r"^svformer stream: input not found: /dev/video97 \(no such camera\)"):
        main(["stream", str(step), "/dev/video97"])
    with pytest.raises(SystemExit, match=r"^svformer stream: .*notes.txt: cannot be opened as video"):
        (tmp_path / "notes.txt").write_text("hello")
        main(["stream", str(step), str(tmp_path / "notes.txt")])
    with pytest.raises(SystemExit, match=r"^svformer export: output folder does not exist"):
        main(["export", str(ckpt), "--out", str(tmp_path / "missing" / "m.onnx")])
