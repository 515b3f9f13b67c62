"""Two CPU processes with DistributedDataParallel (gloo) against one process on the same global batch."""
import os
import socket
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from svformer import create_model
from svformer.config import OptimConfig
from svformer.engine.distributed import DistInfo, broadcast_buffers, wrap_ddp
from svformer.engine.optim import build_optimizer, soft_cross_entropy
from svformer.snn.sync_norm import convert_sync_batchnorm
from svformer.engine.trainer import train_step

STEPS, GLOBAL_BATCH = 2, 4
MODEL = dict(num_classes=5, embed_dim=(8, 16, 24, 32), depth=(1, 1, 1, 1), head_dim=8, img_size=32, num_frames=3,
             v_threshold=0.5)


def _data():
    g = torch.Generator().manual_seed(123)
    clips = torch.randn(STEPS, GLOBAL_BATCH, 3, 3, 32, 32, generator=g) * 2
    targets = torch.nn.functional.one_hot(torch.randint(0, 5, (STEPS, GLOBAL_BATCH), generator=g), 5).float()
    return clips, targets


def _model_and_optimizer():
    torch.manual_seed(0)
    model = create_model("svformer_tiny", **MODEL)
    return model, build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.05))


def _worker(rank, world, port, out_dir, sync_bn=False, steps=STEPS):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, opt = _model_and_optimizer()
    if sync_bn:
        convert_sync_batchnorm(model)
    ddp = wrap_ddp(model, torch.device("cpu"))
    clips, targets = _data()
    part = GLOBAL_BATCH // world
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for s in range(steps):
            mine = slice(rank * part, (rank + 1) * part)
            train_step(ddp, opt, clips[s, mine], targets[s, mine], 20.0, torch.device("cpu"))
    own = {k: v.clone() for k, v in model.named_buffers() if "running" in k}
    broadcast_buffers(model, DistInfo(rank, world, rank))  # what the trainer does before evaluating
    torch.save({"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "own_buffers": own,
                "grads": {k: v.grad.clone() for k, v in model.named_parameters()},
                "warnings": [str(w.message) for w in seen]}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(tmp_path, world, sync_bn=False, steps=STEPS):
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path), sync_bn, steps), nprocs=world, join=True)
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    for r in runs[1:]:
        for k, v in runs[0]["state"].items():
            assert torch.equal(v, r["state"][k]), f"ranks disagree on {k}"
    return runs


def _single_process(parts, steps=STEPS):
    """The global batch in one process, as ``parts`` pieces each forwarded on its own (per-device BatchNorm
    statistics) with the mean of their gradients: what DDP's gradient all-reduce computes. Spiking
    networks are discontinuous: another summation order (thread count) can flip a spike, so one thread
    as in the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, opt = _model_and_optimizer()
    clips, targets = _data()
    size = GLOBAL_BATCH // parts
    for s in range(steps):
        opt.zero_grad()
        for h in range(parts):
            part = slice(h * size, (h + 1) * size)
            (soft_cross_entropy(model(clips[s, part]), targets[s, part]) / parts).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()
    torch.set_num_threads(threads)
    return model


def _assert_close(state, model):
    start = _model_and_optimizer()[0].state_dict()
    moved = 0
    for k, v in model.named_parameters():
        torch.testing.assert_close(state[k], v.detach(), rtol=1e-4, atol=1e-6, msg=lambda m: f"{k}: {m}")
        moved += not torch.equal(v.detach(), start[k])
    assert moved > 0.9 * len(list(model.parameters())), "the steps must actually change the weights"


def test_two_process_ddp_matches_single_process(tmp_path):
    runs = _ranks(tmp_path, 2)
    _assert_close(runs[0]["state"], _single_process(parts=2))
    # each rank's last forward left its own running statistics; rank 0's now hold on both
    own = [r["own_buffers"] for r in runs]
    assert any(not torch.equal(own[0][k], own[1][k]) for k in own[0])
    # channels-last 1x1 convolutions: gradients are restrided to the buckets' layout, DDP has nothing to say
    assert not [w for r in runs for w in r["warnings"] if "stride" in w], runs[0]["warnings"]


def test_sync_bn_trains_one_clip_per_device_as_one_process_on_the_whole_batch(tmp_path):
    # Four ranks with one clip each: the Conv3d head's BatchNorm3d alone could not train on that; with
    # statistics synchronised, every BatchNorm sees the global batch as one process would.
    runs = _ranks(tmp_path, 4, sync_bn=True, steps=1)
    model = _single_process(parts=1, steps=1)
    # Gradients, not weights after AdamW: statistics summed in another order (per rank, then across
    # ranks) differ in the last bits, which AdamW's normalisation turns into visible steps wherever a
    # gradient is near zero (the biases a BatchNorm follows have a gradient of exactly zero in theory).
    scale = max(v.grad.abs().max().item() for v in model.parameters())
    for k, v in model.named_parameters():
        torch.testing.assert_close(runs[0]["grads"][k], v.grad, rtol=1e-3, atol=1e-5 * scale,
                                   msg=lambda m: f"{k}: {m}")
    assert sum(v.grad.abs().max().item() > 1e-6 for v in model.parameters()) > 0.5 * len(runs[0]["grads"])
    for r in runs:  # running statistics agree across ranks and with the single process
        for k, v in model.state_dict().items():
            if "running" in k:
                torch.testing.assert_close(r["state"][k], v, rtol=1e-4, atol=1e-6, msg=lambda m: f"{k}: {m}")


def test_warnings_of_other_ranks_say_whose_they_are():
    import warnings

    from svformer.engine.distributed import tag_warnings

    with warnings.catch_warnings(record=True) as seen:  # restores warnings.showwarning on exit
        warnings.simplefilter("always")
        tag_warnings(1)
        tag_warnings(3)  # re-tagging replaces, never stacks
        warnings.warn("skipping unreadable sample a.avi: cut short", RuntimeWarning)
    assert [str(w.message) for w in seen] == ["[rank 3] skipping unreadable sample a.avi: cut short"]


class _Views(torch.utils.data.Dataset):
    """7 videos x 3 views of random (C, T, H, W) clips: 21 items, which 2 ranks can only share padded."""
    views_per_video, videos, classes = 3, 7, 4

    def __len__(self):
        return self.videos * self.views_per_video

    def __getitem__(self, i):
        video, view = divmod(i, self.views_per_video)
        clip = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(i))
        return {"clip": clip, "label": video % self.classes, "index": video, "view": view}


def _scorer():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, _Views.classes))


def _evaluate(rank=0, world=1):
    from svformer.engine.data import make_loader
    from svformer.engine.evaluate import evaluate

    loader = make_loader(_Views(), 2, False, 0, seed=0, rank=rank, world_size=world)
    return evaluate(_scorer(), loader, [f"c{i}" for i in range(_Views.classes)], torch.device("cpu"),
                    info=DistInfo(rank, world, rank), monitor=False)


def _eval_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.save(_evaluate(rank, world), os.path.join(out_dir, f"eval{rank}.pt"))
    dist.destroy_process_group()


def test_sharded_evaluation_scores_every_video_exactly_once(tmp_path):
    mp.spawn(_eval_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    alone = _evaluate()
    assert alone.num_videos == _Views.videos and alone.confusion.sum() == _Views.videos
    assert 0 < alone.top1 < 1  # a score that can tell a lost or doubled view
    for rank in range(2):
        shared = torch.load(tmp_path / f"eval{rank}.pt", weights_only=False)
        assert shared.summary() == alone.summary() and shared.per_class == alone.per_class
        assert (shared.confusion == alone.confusion).all()
