"""Layout helpers: is_dense against the memory offsets a tensor actually covers, also under dynamic shapes."""
import itertools

import pytest
import torch

from svformer.cpu.layout import flat, is_dense, like, time_major


def _covers_one_block(x: torch.Tensor) -> bool:
    """The definition: the offsets of all elements are exactly 0 .. numel - 1, each once."""
    offsets = sorted(
        sum(i * s for i, s in zip(index, x.stride())) for index in itertools.product(*(range(n) for n in x.shape)))
    return offsets == list(range(x.numel()))


def _views():
    base = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    yield base
    for perm in itertools.permutations(range(4)):
        yield base.permute(*perm)
        yield base.permute(*perm).contiguous().permute(*perm)
    yield base.contiguous(memory_format=torch.channels_last)
    yield base[:, 1:]                       # a gap between steps
    yield base[:1]                          # one step: dense
    yield base[..., ::2]                    # strided
    yield base[:, :1]                       # size-1 dim with a stride that no longer matters
    yield base.transpose(0, 1)[:1]
    yield torch.zeros(3, 1, 4).expand(3, 2, 4)  # overlap
    yield torch.zeros(1, 1)
    yield torch.zeros(4, 4)[:, 0]


@pytest.mark.parametrize("x", list(_views()), ids=lambda x: f"{tuple(x.shape)}{x.stride()}")
def test_is_dense_matches_the_memory_it_covers(x):
    assert is_dense(x) == _covers_one_block(x)


def test_time_major_flat_and_like():
    x = torch.randn(3, 2, 4, 5, 6).contiguous(memory_format=torch.channels_last_3d)
    assert time_major(x) is x  # (T, B, ...) with any dense order inside a step
    y = x.transpose(0, 1)  # steps interleaved with the batch: copied
    t = time_major(y)
    assert t is not y and t.is_contiguous() and torch.equal(t, y)
    assert torch.equal(flat(t), t.reshape(2, -1)) and torch.equal(flat(t, steps=False), t.reshape(-1))
    assert like(y, y) is y
    z = like(t, y)  # y's strides, t's values
    assert z.stride() == y.stride() and torch.equal(z, t)


def test_is_dense_under_compile_with_dynamic_shapes():
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: x * 2 if is_dense(x) else x, backend="eager", dynamic=True, fullgraph=True)
    for n in (3, 5):
        x = torch.randn(n, 4, 6).permute(0, 2, 1)
        assert torch.equal(compiled(x), x * 2)
        assert torch.equal(compiled(x[:, ::2]), x[:, ::2])


def test_time_major_copies_into_alloc():
    """A non-time-major input (the attention's q, k, v are views of one tensor) is copied into memory
    from ``alloc``, contiguous whatever the input's strides; a time-major one is returned as is."""
    made = []

    def alloc(like, dtype=None):
        made.append(torch.empty_like(like, dtype=dtype))
        return made[-1]

    qkv = torch.randn(4, 2, 7, 3, 2, 5).permute(3, 0, 1, 4, 2, 5)
    for part in qkv.unbind(0):
        copy = time_major(part, alloc)
        assert copy is made[-1] and copy.is_contiguous() and torch.equal(copy, part)
    dense = torch.randn(4, 2, 3, 5, 5).contiguous(memory_format=torch.channels_last_3d)
    assert time_major(dense, alloc) is dense and len(made) == 3
