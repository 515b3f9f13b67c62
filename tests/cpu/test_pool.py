"""The pool of recycled buffers: empty_like's layout, reuse only once nothing references a block, the
idle limit, release, the switch, and training through a pool that recycles everything it may."""
import pytest
import torch
import torch.nn.functional as F

from svformer import create_model
from svformer.cpu import pool

N = 1 << 12  # floats per test tensor; the pools below take anything from 1 KB


@pytest.fixture
def small_pool():
    return pool.BufferPool(max_idle=8, min_bytes=1024)


def test_empty_like_has_empty_likes_shape_dtype_and_strides(small_pool):
    maps = torch.randn(3, 2, 8, 16, 16).contiguous(memory_format=torch.channels_last_3d)
    cases = [torch.randn(4, N), maps, torch.randn(N, 4).t(), torch.randn(8, 2 * N)[:, ::2]]
    for x in cases:
        for dtype in (None, torch.uint8):
            y, ref = small_pool.empty_like(x, dtype), torch.empty_like(x, dtype=dtype)
            assert (y.shape, y.dtype, y.stride()) == (ref.shape, ref.dtype, ref.stride())
            y.fill_(1)  # the whole extent is writable


def test_a_block_is_reused_only_when_nothing_references_it(small_pool):
    x = torch.randn(4, N)
    a = small_pool.empty_like(x)
    ptr = a.data_ptr()
    view = a[1:]
    del a
    b = small_pool.empty_like(x)
    assert b.data_ptr() != ptr  # a view keeps the block busy
    del view
    assert small_pool.empty_like(x).data_ptr() == ptr
    assert small_pool.empty_like(torch.randn(8, N)).data_ptr() not in (ptr, b.data_ptr())  # other size


def test_a_request_takes_its_size_else_the_smallest_free_block_up_to_the_slack(small_pool):
    exact, larger, largest = (small_pool.empty_like(torch.randn(n, N)) for n in (2, 3, 4 * pool.MAX_SLACK))
    ptrs = [t.data_ptr() for t in (exact, larger, largest)]
    del exact, larger, largest
    assert small_pool.empty_like(torch.randn(2, N)).data_ptr() == ptrs[0]  # its own size first
    a = small_pool.empty_like(torch.randn(1, N))
    assert a.data_ptr() == ptrs[0] and a.shape == (1, N)  # the smallest that is large enough
    b = small_pool.empty_like(torch.randn(1, N))
    assert b.data_ptr() == ptrs[1]  # 3x: within the slack
    b.fill_(1)
    c = small_pool.empty_like(torch.randn(1, N))
    assert c.data_ptr() not in ptrs  # 16x: too large for it, so a new block
    assert small_pool.stats().blocks == 4


def test_a_block_saved_by_autograd_is_not_reused_until_the_graph_is_gone(small_pool):
    w = torch.randn(4, N, requires_grad=True)
    a = small_pool.empty_like(w).copy_(torch.rand(4, N))
    ptr, expected = a.data_ptr(), a.clone()
    loss = (w * a).sum()  # saves a for the gradient of w
    del a
    small_pool.empty_like(w).fill_(-1.0)  # must not land on the saved tensor
    loss.backward()
    assert torch.equal(w.grad, expected)
    del loss
    assert small_pool.empty_like(w).data_ptr() == ptr


def test_idle_free_blocks_are_given_back_when_the_pool_grows(small_pool):
    small_pool.empty_like(torch.randn(2, N))
    assert small_pool.stats().free_blocks == 1
    for _ in range(small_pool.max_idle):
        small_pool.empty_like(torch.randn(3, N))  # hits after the first: the idle block stays
    assert small_pool.stats().blocks == 2
    small_pool.empty_like(torch.randn(5, N))  # a miss after max_idle requests: the idle one goes
    sizes = sorted(small_pool._blocks)
    assert sizes == [3 * N * 4, 5 * N * 4]


def test_release_keeps_blocks_in_use(small_pool):
    held = small_pool.empty_like(torch.randn(2, N))
    small_pool.empty_like(torch.randn(3, N))
    assert small_pool.release() == 3 * N * 4
    stats = small_pool.stats()
    assert (stats.blocks, stats.free_blocks, stats.bytes) == (1, 0, held.numel() * 4)


def test_small_and_non_cpu_requests_bypass_the_pool(small_pool):
    assert small_pool.empty_like(torch.randn(10)).numel() == 10
    small_pool.empty_like(torch.randn(4, N, device="meta"))
    assert small_pool.stats().blocks == 0


def test_a_disabled_pool_serves_nothing_and_lets_go_of_its_blocks(small_pool):
    held = small_pool.empty_like(torch.randn(2, N))
    small_pool.empty_like(torch.randn(3, N))
    small_pool.set_enabled(False)
    assert small_pool.stats().blocks == 0
    assert small_pool.empty_like(torch.randn(3, N)).numel() == 3 * N and small_pool.stats().requests == 2
    held.fill_(1)  # a block in use stays valid: its tensor holds the memory
    small_pool.set_enabled(True)
    small_pool.empty_like(torch.randn(3, N))
    assert small_pool.stats().blocks == 1


def _train(use_pool: bool, steps=2):
    torch.manual_seed(0)
    model = create_model("svformer_tiny", embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1), head_dim=16,
                         img_size=64, num_frames=3, v_threshold=0.3, accelerate={"pool": use_pool}).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(torch.randn(2, 3, 3, 64, 64)), torch.tensor([0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return [p.clone() for p in model.parameters()], model.eval()(torch.randn(2, 3, 3, 64, 64))


def test_training_through_a_pool_that_recycles_every_output_is_bit_identical(monkeypatch):
    params, logits = _train(use_pool=False)
    recycling = pool.BufferPool(min_bytes=0)
    monkeypatch.setattr(pool, "_POOL", recycling)
    pooled_params, pooled_logits = _train(use_pool=True)
    stats = recycling.stats()
    assert 0 < stats.blocks < stats.requests  # blocks were recycled
    assert torch.equal(logits, pooled_logits)
    assert all(torch.equal(a, b) for a, b in zip(params, pooled_params))
