"""SVFormer: every registered model trains, every variant is an argument, bad input fails clearly."""
import pytest
import torch
import torch.nn.functional as F

from svformer import SVFormer, create_model, list_models
from svformer.analysis import count_macs, count_parameters

# Small overrides that keep every registered model's architecture but make a CPU pass take milliseconds.
SMALL = dict(embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16, img_size=64, num_frames=3)


def _clip(model, batch=2):
    return torch.randn(batch, model.in_chans, model.num_frames, *model.img_size)


def test_registry():
    assert {"svformer_paper", "svformer_dvs", "svformer_tiny"} <= set(list_models())
    assert list_models("svformer_d*") == ["svformer_dvs"]
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_every_parameter_gets_a_gradient(name):
    # At initialisation the attention output of a model this small rarely reaches threshold 1, which
    # leaves proj weights with an exact zero gradient; a lower threshold makes every layer fire.
    model = create_model(name, **SMALL, v_threshold=0.3).train()
    x = _clip(model)
    logits = model(x)
    assert logits.shape == (2, model.num_classes)
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", list_models())
def test_outputs_identical_across_calls_and_state_dict_round_trip(name):
    model = create_model(name, **SMALL).eval()
    x = _clip(model)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b), "neuron state leaked from one forward into the next"
    clone = create_model(name, **SMALL).eval()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x), a)


def test_paper_model_counts_and_shapes():
    model = create_model("svformer_paper")
    assert count_parameters(model) == 13_801_612
    assert count_parameters(SVFormer(norm="shared")) == 13_352_332
    report = count_macs(model, (1, 3, 16, 224, 224))
    assert report.macs == 38_189_558_784  # spec 2.9: 38.1896 G (conv + linear + both attention matmuls)
    assert sum(report.by_module.values()) == report.macs
    assert report.by_operator["bmm"] == 2 * 16 * (6 * 196 * 64 * 64 * 3 + 8 * 49 * 64 * 64)
    head = count_parameters(torch.nn.ModuleList([model.head_lif, model.head_conv, model.head_norm, model.head]))
    assert head == 1_712_230  # spec 2.8
    assert count_parameters(create_model("svformer_paper", num_classes=51)) == 13_801_612 - 50 * 1025


def test_stage_shapes_on_meta_device():
    model = create_model("svformer_paper").to("meta")
    shapes = {}
    for name in ["blocks1", "blocks2", "blocks3", "blocks4", "local"]:
        module = getattr(model, name)
        module = module[-1] if isinstance(module, torch.nn.ModuleList) else module
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    model.head_lif.register_forward_hook(lambda m, i, o: shapes.__setitem__("fusion", tuple(o.shape)))
    out = model(torch.zeros(2, 3, 16, 224, 224, device="meta"))
    assert shapes == {"blocks1": (16, 2, 128, 56, 56), "blocks2": (16, 2, 256, 28, 28),
                      "blocks3": (16, 2, 384, 14, 14), "blocks4": (16, 2, 512, 7, 7),
                      "local": (16, 2, 512, 7, 7), "fusion": (16, 2, 1024, 7, 7)}
    assert out.shape == (2, 101)


@pytest.mark.parametrize("variant", [
    dict(neuron="lif"), dict(neuron="if"), dict(surrogate="sigmoid"), dict(v_threshold=0.5),
    dict(norm="shared"), dict(fusion=False), dict(head="avgpool"), dict(drop_path_rate=0.2),
    dict(accelerate=False), dict(accelerate={"pool": False, "channels_last": False}), dict(detach_reset=False, v_reset=None),
])
def test_variants_are_arguments(variant):
    model = SVFormer(num_classes=4, **{**SMALL, **variant}).train()
    logits = model(_clip(model))
    logits.sum().backward()
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    if variant.get("neuron") in ("lif", "if"):
        assert not any(n.endswith(".w") for n, _ in model.named_parameters())
    if variant.get("fusion") is False:
        assert not hasattr(model, "local") and model.head_conv.in_channels == 64


def test_accelerated_and_plain_models_agree():
    torch.manual_seed(1)
    fused = SVFormer(num_classes=4, **SMALL)
    ref = SVFormer(num_classes=4, accelerate=False, **SMALL)
    ref.load_state_dict(fused.state_dict())
    x = _clip(fused) * 3
    for m in (fused, ref):
        m(x).square().sum().backward()
    # Biases feeding a train-mode BN have an exact-zero gradient that both paths return as rounding
    # noise (its size depends on the thread count), so the absolute tolerance scales with the model's
    # largest gradient instead of being a fixed 1e-5.
    scale = max(float(p.grad.abs().max()) for p in ref.parameters())
    for (n, a), (_, b) in zip(fused.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=2e-5 * scale, msg=n)


def test_time_flexible_model_accepts_any_T_and_size():
    model = SVFormer(num_classes=4, norm="shared", head="avgpool", **SMALL).eval()
    with torch.no_grad():
        for t, size in [(1, 64), (5, 64), (3, 96)]:
            assert model(torch.randn(1, 3, t, size, size)).shape == (1, 4)


def test_bad_inputs_fail_with_clear_messages():
    model = SVFormer(num_classes=4, **SMALL)
    with pytest.raises(ValueError, match=r"num_frames=3 \(T\), got T=4"):
        model(torch.randn(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match="in_chans=3, got C=2"):
        model(torch.randn(1, 2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.randn(3, 3, 64, 64))
    with pytest.raises(ValueError, match="img_size=\\(64, 64\\), got 96x96"):
        model(torch.randn(1, 3, 3, 96, 96))
    with pytest.raises(ValueError, match="unknown neuron"):
        SVFormer(neuron="relu")
    with pytest.raises(ValueError, match="head_dim"):
        SVFormer(**{**SMALL, "head_dim": 20})
    with pytest.raises(ValueError, match="unknown head"):
        SVFormer(head="linear")
    with pytest.raises(ValueError, match="even stage-3 map"):
        SVFormer(**{**SMALL, "img_size": 48})
    assert SVFormer(num_classes=4, **{**SMALL, "img_size": 48, "fusion": False}).eval()(
        torch.randn(1, 3, 3, 48, 48)).shape == (1, 4)


def test_torch_compile_captures_the_whole_model_and_matches_eager():
    # fullgraph: no graph breaks. aot_eager traces what inductor would get, forward and backward, without
    # spending minutes on code generation. The first batch size compiles with static shapes, the second
    # recompiles with a symbolic batch dimension (PyTorch's automatic dynamic shapes): both must match.
    torch._dynamo.reset()  # so that the first call here is the first compilation of the model
    torch.manual_seed(0)
    eager = SVFormer(num_classes=4, **SMALL, v_threshold=0.3)
    model = SVFormer(num_classes=4, **SMALL, v_threshold=0.3)
    model.load_state_dict(eager.state_dict())
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for batch in (2, 3):
        x = _clip(eager, batch)
        for m in (model, eager):
            m.train().zero_grad()
        compiled(x).square().sum().backward()
        eager(x).square().sum().backward()
        scale = max(float(p.grad.abs().max()) for p in eager.parameters())
        for (n, a), (_, b) in zip(model.named_parameters(), eager.named_parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=2e-5 * scale, msg=n)
        for (n, a), (_, b) in zip(model.named_buffers(), eager.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)  # running statistics
        with torch.no_grad():
            torch.testing.assert_close(compiled.eval()(x), eager.eval()(x), rtol=1e-4, atol=1e-5)


def test_one_clip_per_device_is_one_clear_line():
    # The Conv3d head's BatchNorm3d normalises over the batch: one clip cannot train it.
    model = SVFormer(num_classes=4, **SMALL).train()
    with pytest.raises(ValueError, match="needs at least 2 clips per device, got 1: .*head='avgpool'"):
        model(_clip(model, 1))
    with torch.no_grad():
        assert model.eval()(_clip(model, 1)).shape == (1, 4)  # evaluation is fine
    SVFormer(num_classes=4, head="avgpool", **SMALL).train()(_clip(model, 1)).sum().backward()
