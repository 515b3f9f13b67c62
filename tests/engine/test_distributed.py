"""Two CPU processes with DistributedDataParallel (gloo) against one process on the same global batch."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from svformer import create_model
from svformer.config import OptimConfig
from svformer.engine.optim import build_optimizer
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


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model, opt = _model_and_optimizer()
    ddp = DistributedDataParallel(model)
    clips, targets = _data()
    half = GLOBAL_BATCH // world
    for s in range(STEPS):
        part = slice(rank * half, (rank + 1) * half)
        train_step(ddp, opt, clips[s, part], targets[s, part], 20.0, torch.device("cpu"))
    torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks disagree on {k}"

    # The single-process run on the same global batch. BatchNorm normalises each replica's half with that
    # half's statistics (no SyncBatchNorm), so the equivalent single process averages the gradients of
    # the two halves, each forwarded on its own - exactly what DDP's gradient all-reduce computes.
    # Spiking networks are discontinuous: a different summation order (another thread count) can flip a
    # spike and move the weights far. Use the workers' single thread here too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, opt = _model_and_optimizer()
    clips, targets = _data()
    from svformer.engine.optim import soft_cross_entropy

    for s in range(STEPS):
        opt.zero_grad()
        for h in range(2):
            part = slice(h * 2, h * 2 + 2)
            (soft_cross_entropy(model(clips[s, part]), targets[s, part]) / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()
    torch.set_num_threads(threads)
    moved = 0
    for k, v in model.named_parameters():
        torch.testing.assert_close(r0[k], v.detach(), rtol=1e-4, atol=1e-6)
        moved += not torch.equal(v.detach(), _model_and_optimizer()[0].state_dict()[k])
    assert moved > 0.9 * len(r0), "the steps must actually change the weights"


def test_warnings_of_other_ranks_say_whose_they_are():
    import warnings

    from svformer.engine.distributed import tag_warnings

    with warnings.catch_warnings(record=True) as seen:  # restores warnings.showwarning on exit
        warnings.simplefilter("always")
        tag_warnings(1)
        tag_warnings(3)  # re-tagging replaces, never stacks
        warnings.warn("skipping unreadable sample a.avi: cut short", RuntimeWarning)
    assert [str(w.message) for w in seen] == ["[rank 3] skipping unreadable sample a.avi: cut short"]
