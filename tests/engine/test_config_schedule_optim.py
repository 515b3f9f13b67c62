import math

import pytest
import torch

from svformer import create_model
from svformer.config import ConfigError, OptimConfig, list_configs, load_config, to_dict
from svformer.engine.optim import param_groups, soft_cross_entropy
from svformer.engine.schedule import lr_at


def test_every_shipped_config_loads():
    assert {"ucf101", "hmdb51", "ntu60_xsub", "ntu60_xview", "dvs128_gesture", "demo"} <= set(list_configs())
    for name in list_configs():
        cfg = load_config(name)
        assert cfg.optim.epochs > 0 and cfg.model.name.startswith("svformer")


def test_paper_recipe_values():
    cfg = load_config("ucf101")
    o, a, d = cfg.optim, cfg.aug, cfg.data
    assert (o.lr, o.warmup_epochs, o.min_lr, o.epochs, o.weight_decay, o.clip_grad) == (6e-3, 30, 1e-6, 600, 0.05, 20.0)
    assert (a.rand_augment, a.erasing_p, a.mixup_alpha, a.cutmix_alpha, a.label_smoothing, a.repeats) == \
        ("rand-m5-n2-mstd0.25", 0.25, 0.8, 1.0, 0.1, 2)
    assert (d.num_frames, d.sampling_rate, d.crop_size, d.test_clips, d.test_crops) == (16, 4, 224, 5, 3)


def test_overrides_and_errors():
    cfg = load_config("ucf101", ["optim.lr=0.003", "data.root=/x", "model.kwargs={drop_path_rate: 0.1}",
                                 "aug.scale=[0.5, 1]"])
    assert cfg.optim.lr == 0.003 and cfg.data.root == "/x" and cfg.model.kwargs == {"drop_path_rate": 0.1}
    assert cfg.aug.scale == (0.5, 1.0)
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        load_config("ucf101", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="'optim.epochs' expects int"):
        load_config("ucf101", ["optim.epochs=abc"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(FileNotFoundError, match="nope"):
        load_config("nope")
    assert to_dict(load_config("demo"))["data"]["synthetic"] == "video"


def test_schedule_warmup_then_cosine():
    cfg = OptimConfig(lr=6e-3, min_lr=1e-6, warmup_lr=1e-6, warmup_epochs=30, epochs=600)
    assert lr_at(0, cfg) == pytest.approx(1e-6)
    assert lr_at(15, cfg) == pytest.approx(1e-6 + (6e-3 - 1e-6) / 2)
    assert lr_at(30, cfg) == pytest.approx(6e-3)
    assert lr_at(315, cfg) == pytest.approx(1e-6 + (6e-3 - 1e-6) * (1 + math.cos(math.pi * 0.5)) / 2)
    assert lr_at(600, cfg) == pytest.approx(1e-6)


def test_parameter_groups_follow_the_authors():
    model = create_model("svformer_tiny")
    decay, no_decay = param_groups(model, 0.05, decay_neuron_w=True)
    ids = {id(p) for p in decay["params"]}
    named = dict(model.named_parameters())
    assert id(named["blocks1.0.conv1.weight"]) in ids and id(named["blocks3.0.attn.qkv.weight"]) in ids
    assert id(named["blocks1.0.act1.w"]) in ids  # the PLIF w is decayed, as in the authors' optimizer
    assert id(named["blocks1.0.conv1.bias"]) not in ids and id(named["patch_embed1.norm.weight"]) not in ids
    assert id(named["head_norm.weight"]) not in ids
    _, no_decay_w = param_groups(model, 0.05, decay_neuron_w=False)
    assert id(named["blocks1.0.act1.w"]) in {id(p) for p in no_decay_w["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


def test_soft_cross_entropy_equals_cross_entropy_on_hard_targets():
    logits = torch.randn(4, 7)
    labels = torch.tensor([0, 3, 6, 2])
    hard = torch.nn.functional.one_hot(labels, 7).float()
    torch.testing.assert_close(soft_cross_entropy(logits, hard), torch.nn.functional.cross_entropy(logits, labels))


def test_frame_shuffle_control_permutes_time_only_per_clip():
    from svformer.engine.evaluate import shuffle_frames_fn

    clips = torch.arange(2 * 6, dtype=torch.float32).view(2, 1, 6, 1, 1).expand(2, 3, 6, 2, 2).contiguous()
    out = shuffle_frames_fn(0)(clips)
    assert out.shape == clips.shape and not torch.equal(out, clips)
    for b in range(2):
        assert sorted(out[b, 0, :, 0, 0].tolist()) == clips[b, 0, :, 0, 0].tolist()
        assert torch.equal(out[b, 0], out[b, 2])  # the same permutation for every channel and pixel
    assert not torch.equal(out[0, 0, :, 0, 0] - clips[0, 0, 0, 0, 0], out[1, 0, :, 0, 0] - clips[1, 0, 0, 0, 0])
