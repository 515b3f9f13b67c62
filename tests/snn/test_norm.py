import pytest
import torch
from torch import nn

from svformer.snn import TimeBatchNorm


def _authors_bn_maps(x, bn):
    # BatchNorm2d_eT of the authors: (T, B, C, H, W) -> (B, T*C, H, W) -> BN -> back.
    T, B, C, H, W = x.shape
    y = bn(x.permute(1, 0, 2, 3, 4).reshape(B, T * C, H, W))
    return y.reshape(B, T, C, H, W).permute(1, 0, 2, 3, 4)


def _authors_bn_tokens(x, bn):
    # BatchNorm1d_eT: (T, B, N, C) -> (T, B, C, N) -> (B, T*C, N) -> BN -> back.
    T, B, N, C = x.shape
    y = bn(x.transpose(2, 3).permute(1, 0, 2, 3).reshape(B, T * C, N))
    return y.reshape(B, T, C, N).permute(1, 0, 2, 3).transpose(2, 3)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_per_step_matches_authors_layout(channels_last, training):
    T, B, C = 4, 3, 5
    x = torch.randn(T, B, 7, C) if channels_last else torch.randn(T, B, C, 6, 6)
    ours = TimeBatchNorm(C, T, channels_last=channels_last)
    ref = nn.BatchNorm1d(T * C) if channels_last else nn.BatchNorm2d(T * C)
    with torch.no_grad():
        for p in (ours.weight, ours.bias, ours.running_mean):
            p.normal_()
        ours.running_var.uniform_(0.5, 2)
    ref.load_state_dict(ours.state_dict())
    ours.train(training)
    ref.train(training)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya = ours(xa)
    yb = (_authors_bn_tokens if channels_last else _authors_bn_maps)(xb, ref)
    torch.testing.assert_close(ya, yb)
    (ya * torch.arange(ya.numel()).reshape(ya.shape).cos()).sum().backward()
    (yb * torch.arange(yb.numel()).reshape(yb.shape).cos()).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)


@pytest.mark.parametrize("channels_last", [False, True])
def test_per_step_bfloat16_input(channels_last):
    # Under CPU autocast the convs feed bfloat16 into float32-parameter BNs.
    T, B, C = 3, 4, 6
    x = torch.randn(T, B, 5, C) if channels_last else torch.randn(T, B, C, 4, 4)
    ours = TimeBatchNorm(C, T, channels_last=channels_last).train()
    ref = TimeBatchNorm(C, T, channels_last=channels_last).train()
    xb = x.bfloat16().requires_grad_(True)
    y = ours(xb)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref(x.bfloat16().float()), atol=2e-2, rtol=2e-2)
    y.float().square().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and torch.isfinite(ours.weight.grad).all()


def test_statistics_are_per_time_step():
    bn = TimeBatchNorm(2, 3).train()
    x = torch.randn(3, 8, 2, 4, 4) * torch.tensor([1.0, 5.0, 20.0]).view(3, 1, 1, 1, 1) + 7
    y = bn(x)
    for t in range(3):
        assert y[t].mean(dim=(0, 2, 3)).abs().max() < 1e-5
        assert (y[t].var(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    assert bn.running_mean.shape == (6,)  # t-major: entry t*C + c


def test_shared_over_time():
    bn = TimeBatchNorm(2, per_step=False).train()
    ref = nn.BatchNorm2d(2).train()
    x = torch.randn(5, 3, 2, 4, 4)
    torch.testing.assert_close(bn(x), ref(x.flatten(0, 1)).unflatten(0, (5, 3)))
    bn(torch.randn(2, 3, 2, 4, 4))  # any T
    tokens = TimeBatchNorm(2, per_step=False, channels_last=True).train()
    ref = nn.BatchNorm1d(2).train()
    x = torch.randn(5, 3, 7, 2)
    torch.testing.assert_close(tokens(x), ref(x.reshape(-1, 2)).reshape(x.shape))


def test_wrong_T_and_channels():
    bn = TimeBatchNorm(4, 16)
    with pytest.raises(ValueError, match="built for T=16 time steps, got T=8"):
        bn(torch.randn(8, 2, 4, 3, 3))
    with pytest.raises(ValueError, match="expected 4 channels"):
        bn(torch.randn(16, 2, 5, 3, 3))
    with pytest.raises(ValueError, match="num_steps"):
        TimeBatchNorm(4)


def test_forward_step_uses_that_steps_statistics_and_only_in_eval():
    bn = TimeBatchNorm(3, num_steps=4).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.arange(12.0))
        bn.running_var.fill_(4.0)
    x = torch.randn(4, 2, 3, 5, 5)
    whole = bn(x)
    for t in range(4):
        assert torch.allclose(bn(x[t:t + 1], t), whole[t:t + 1], atol=1e-6)
    with pytest.raises(ValueError, match="outside the 4 steps"):
        bn(x[:1], 4)
    with pytest.raises(RuntimeError, match="eval mode only"):
        bn.train()(x[:1], 0)
