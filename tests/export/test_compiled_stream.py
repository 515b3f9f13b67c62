"""The compiled step graph (`export.compiled.CompiledStream`): after T frames the whole-clip logits, the
same as eager streaming, clip after clip; the same errors as the other streams."""
import pytest
import torch

from svformer import StreamingSVFormer, SVFormer
from svformer.export.compiled import CompiledStream
from svformer.models.layers import SpikeInput

SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=3,
             v_threshold=0.3)


@pytest.fixture(scope="module")
def trained_model():
    torch.manual_seed(0)
    model = SVFormer(num_classes=5, **SMALL).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # BatchNorm statistics and weights away from their initial values
        loss = model(torch.randn(4, 3, 3, 64, 64)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def stream(trained_model):
    return CompiledStream(trained_model)  # one compilation (per batch size) for the module


def test_compiled_stream_gives_the_clip_logits(trained_model, stream):
    torch.manual_seed(1)
    clips = [torch.randn(2, 3, 3, 64, 64) for _ in range(2)]
    eager = StreamingSVFormer(trained_model)
    for clip in clips:  # two clips through one stream: reset() starts over
        stream.reset()
        eager.reset()
        for t in range(3):
            logits = stream.step(clip[:, :, t])
            eager_logits = eager.step(clip[:, :, t])
            torch.testing.assert_close(logits, eager_logits, rtol=1e-4, atol=1e-5)
        assert stream.steps == 3
        # feature-map states stay channels-last (the convolutions' layout) from frame to frame, tokens' do not
        maps = [v for v in stream._states[1:] if v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last)
                and not v.is_contiguous()]
        # (every map here is at least 2x2: one layout each)
        assert len(maps) == sum(t.layout == torch.channels_last for t in stream._templates) > 0
        with torch.no_grad():
            want = trained_model(clip)
        torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-5)
        assert torch.equal(logits.argmax(1), want.argmax(1))
    assert trained_model.training is False and all(p.requires_grad for p in trained_model.parameters())


def test_compiled_stream_errors(stream):
    stream.reset()
    with pytest.raises(ValueError, match=r"frames of shape \(B, 3, 64, 64\)"):
        stream.step(torch.zeros(1, 3, 32, 32))
    stream.step(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="started with 2 frame"):
        stream.step(torch.zeros(1, 3, 64, 64))
    stream.step(torch.zeros(2, 3, 64, 64))
    stream.step(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="clips of 3 frames"):
        stream.step(torch.zeros(2, 3, 64, 64))


def test_compiled_stream_runs_the_sparse_products(trained_model, stream):
    """The step graph calls the sparse op (`cpu.sparse.GraphKernel`) on the layers that read spikes, and
    sparse=False compiles the dense graph; their logits agree to rounding."""
    from svformer.cpu import sparse

    if not sparse.available():
        pytest.skip("no C compiler for the sparse kernels")
    torch.manual_seed(2)
    clip = 0.3 * torch.randn(2, 3, 3, 64, 64)  # a dim clip: few spikes (batch 2: compiled already)
    dense = CompiledStream(trained_model, sparse=False)
    used = []
    original = sparse.spike_conv
    try:
        sparse.spike_conv = lambda *a, **k: used.append(1) or original(*a, **k)
        stream.reset()
        logits = [stream.step(clip[:, :, t]) for t in range(3)][-1]
        sparse_calls = len(used)
        dense_logits = [dense.step(clip[:, :, t]) for t in range(3)][-1]
    finally:
        sparse.spike_conv = original
    assert sparse_calls > 0 and len(used) == sparse_calls
    torch.testing.assert_close(logits, dense_logits, rtol=1e-4, atol=1e-5)
    # By default, as the model's own inference: a model accelerated without sparse_spikes streams densely.
    plain = SVFormer(num_classes=5, accelerate={"sparse_spikes": False}, **SMALL)
    for model, want in ((trained_model, True), (plain, False)):
        layers = [m for m in CompiledStream(model)._graph.modules() if isinstance(m, SpikeInput) and m.spike_input]
        assert layers and any(isinstance(m.kernel, sparse.GraphKernel) for m in layers) == want
