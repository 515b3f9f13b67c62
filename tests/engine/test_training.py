"""End to end on a tiny synthetic dataset: train, resume exactly, test, predict, CLI errors."""
import json

import pytest
import torch

from svformer.cli import main
from svformer.config import load_config
from svformer.engine.checkpoint import load_checkpoint
from svformer.engine.predict import predict_file
from svformer.engine.trainer import Trainer, train


def tiny_config(tmp_path, run="run", **extra):
    return load_config("demo", tiny_config_overrides(tmp_path, run, **extra))


def tiny_config_overrides(tmp_path, run="run", **extra):
    return [
        f"output_dir={tmp_path / run}", f"data.root={tmp_path / 'data'}", "data.synthetic_size=32",
        "data.synthetic_frames=8", "data.synthetic_clips_per_group=1", "data.synthetic_train_groups=2",
        "data.num_frames=4", "data.sampling_rate=2", "data.crop_size=32", "data.num_workers=0",
        "data.val_fraction=0.5", "optim.batch_size=4", "optim.epochs=2", "optim.warmup_epochs=1",
        "eval_every=1", "checkpoint_every=1", "threads=1", "max_train_minutes=null",
        "model.kwargs={embed_dim: [8, 16, 24, 32], depth: [1, 1, 1, 1], head_dim: 8}",
    ] + [f"{k}={v}" for k, v in extra.items()]


def test_train_writes_run_folder_and_resume_is_exact(tmp_path):
    full = train(tiny_config(tmp_path, "full"), test=False)
    assert full["epochs_run"] == 2
    run = tmp_path / "full"
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "checkpoint_epoch_00001.pt"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_top1" in r for r in rows)
    state = load_checkpoint(str(run / "last.pt"))
    assert state["config"]["optim"]["batch_size"] == 4 and state["epoch"] == 2

    # One epoch, then resume for the second: identical weights and optimizer state.
    train(tiny_config(tmp_path, "half", **{"optim.epochs": 2, "max_train_minutes": 0.0}), test=False)
    assert load_checkpoint(str(tmp_path / "half" / "last.pt"))["epoch"] == 1
    train(tiny_config(tmp_path, "half"), resume=str(tmp_path / "half" / "last.pt"), test=False)
    resumed = load_checkpoint(str(tmp_path / "half" / "last.pt"))
    assert resumed["epoch"] == 2 and resumed["iteration"] == state["iteration"]
    for k, v in state["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    torch.testing.assert_close(resumed["optimizer"]["state"], state["optimizer"]["state"], rtol=0, atol=0)


def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(tmp_path):
    # aot_eager traces the same graph inductor would compile, in seconds; the compiled graph takes the
    # plain-op neuron and reshaped-BN paths, so values agree to rounding, not bit for bit.
    torch._dynamo.reset()
    runs = {}
    for name, extra in (("eager", {}), ("compiled", {"compile": "aot_eager"})):
        assert train(tiny_config(tmp_path, name, **{"optim.epochs": 1}, **extra), test=False)["epochs_run"] == 1
        loss = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
        runs[name] = loss, load_checkpoint(str(tmp_path / name / "last.pt"))
    (loss, ckpt), (compiled_loss, compiled) = runs["eager"], runs["compiled"]
    a, b = ckpt["model"], compiled["model"]
    assert list(a) == list(b)  # no "_orig_mod." prefixes
    assert compiled_loss == pytest.approx(loss, rel=1e-5)
    # SVFormer normalises the output of (almost) every conv and linear layer with a training-mode BN, so
    # their biases have a zero gradient up to rounding, which AdamW turns into full-size steps of either
    # sign: those differ by design. The same happens to the odd weight whose gradient is rounding noise
    # (one of 768 in a run, off by a tenth of a step): at most 1 % of any tensor may differ, by at most
    # the learning rate summed over the steps. Everything else agrees to rounding.
    layer_biases = {k for k in a if k.endswith(".bias") and a[k[:-len("bias")] + "weight"].dim() >= 2}
    max_step = ckpt["iteration"] * tiny_config(tmp_path).optim.lr
    for k in a:
        if k not in layer_biases and a[k].is_floating_point():
            off = ~torch.isclose(b[k], a[k], rtol=1e-3, atol=1e-5)
            assert off.float().mean() <= 0.01, k
            assert (b[k] - a[k]).abs().max() <= max_step, k
    trainer = Trainer(tiny_config(tmp_path, "wrapped", compile="aot_eager"))
    assert trainer.model._orig_mod is trainer.module  # trains through the compiled wrapper
    with pytest.raises(ValueError, match="'nope' is not a torch.compile backend"):
        Trainer(tiny_config(tmp_path, "bad", compile="nope"))


def test_test_predict_and_cli(tmp_path, capsys):
    cfg = tiny_config(tmp_path, "run")
    summary = train(cfg)
    assert 0 <= summary["test_top1"] <= 1 and summary["test_num_videos"] == 20  # 10 classes x 2 test groups
    assert len(summary["firing_rates"]) == 25  # 2 CBlocks x 3 + 3 embeddings + 2 SABlocks x 7 + local + head
    run = tmp_path / "run"
    assert (run / "plots" / "confusion_test.png").is_file() and (run / "plots" / "training.png").is_file()
    assert main(["test", str(run / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "per-class accuracy" in out and (run / "test_results.json").is_file()
    video = next((tmp_path / "data" / "UCF-101" / "Still").iterdir())
    top = predict_file(str(run / "best.pt"), str(video), topk=3)
    assert len(top) == 3 and abs(sum(p for _, p in top)) <= 1.0 + 1e-6
    assert main(["predict", str(run / "best.pt"), str(video), "--topk", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    # Energy measured with the checkpoint on its own test set.
    out_json = tmp_path / "energy.json"
    assert main(["energy", "--checkpoint", str(run / "best.pt"), "--clips", "6", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert data["source"] == "measured" and data["paper"]["total_mJ"] > 0
    assert set(data["firing_rates"]) == set(summary["firing_rates"])


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit, match="unknown config key 'optim.lrr'"):
        main(["train", "demo", "optim.lrr=1"])
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main(["test", str(tmp_path / "missing.pt")])
    (tmp_path / "x.avi").write_bytes(b"")
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main(["predict", str(tmp_path / "missing.pt"), str(tmp_path / "x.avi")])
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(SystemExit, match="not an svformer training checkpoint"):
        main(["test", str(bad)])


def test_resume_refuses_another_model(tmp_path):
    train(tiny_config(tmp_path, "a", **{"max_train_minutes": 0.0}), test=False)
    other = tiny_config(tmp_path, "b", **{"model.kwargs": "{embed_dim: [8, 16, 24, 32], depth: [1, 1, 2, 1], "
                                                          "head_dim: 8}"})
    with pytest.raises(ValueError, match="another model"):
        Trainer(other, resume=str(tmp_path / "a" / "last.pt"))


def test_demo_writes_summary_and_prints_run_folder_last(tmp_path, capsys):
    from svformer.engine.demo import run_demo

    summary = run_demo(tiny_config_overrides(tmp_path, "demo"))
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str((tmp_path / "demo").resolve())
    data = json.loads((tmp_path / "demo" / "summary.json").read_text())
    for key in ("test_top1", "test_top1_shuffled_frames", "train_seconds", "firing_rates", "energy"):
        assert key in data
    assert data == json.loads(json.dumps(summary))
    assert (tmp_path / "demo" / "plots" / "training.png").is_file()


def test_cpu_training_steps_keep_the_gradients_where_the_first_step_put_them():
    from svformer.engine.trainer import train_step

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    clips, targets = torch.randn(4, 2, 6), torch.softmax(torch.randn(4, 3), 1)
    train_step(model, opt, clips, targets, None, torch.device("cpu"))
    held = [p.grad for p in model.parameters()]
    first = [p.grad.clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(clips.flip(0)), targets)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    train_step(model, opt, clips.flip(0), targets, None, torch.device("cpu"))
    # Zeroed and filled again in place (not freed and made anew), and holding this step's gradients only.
    assert all(p.grad is g for p, g in zip(model.parameters(), held))
    assert not any(torch.equal(p.grad, g) for p, g in zip(model.parameters(), first))
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)
