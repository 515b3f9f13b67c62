"""Operation counts on toy networks, computed by hand, in multi-step (T, B, ...) shapes."""
import pytest
import torch
from torch import nn

from svformer import create_model
from svformer.analysis import OperationCounter, count_macs, full, paper, trace_operations
from svformer.models.layers import SeqConv2d, SpikingSelfAttention
from svformer.snn import IFNode, TimeBatchNorm


class SpikingConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = IFNode(v_threshold=1.0)
        self.conv = SeqConv2d(2, 3, 3, padding=1)
        self.norm = TimeBatchNorm(3, 2)

    def forward(self, x):  # x: (B, C, T, H, W) like a model
        return self.norm(self.conv(self.lif(x.permute(2, 0, 1, 3, 4))))


def test_spiking_conv_with_known_spikes():
    torch.manual_seed(0)
    # (B=2, C=2, T=2, 4, 4); an IF neuron with threshold 1 and hard reset fires exactly where the input
    # is 1.5 at t=0 (0 elsewhere) and, at t=1, where the input is 1.5 or where 0.6 adds to 0.6 left over.
    x = torch.zeros(2, 2, 2, 4, 4)
    x[:, :, 0] = (torch.rand(2, 2, 4, 4) < 0.3).float() * 1.5
    x[:, :, 1] = (torch.rand(2, 2, 4, 4) < 0.5).float() * 1.5
    spikes = (x >= 1).float()
    net = SpikingConv()
    with OperationCounter(net) as counter:
        net(x)
    rec = {r.name: r for r in counter.records()}
    conv = rec["conv"]
    outputs_per_clip = 2 * 3 * 4 * 4  # T x C_out x H x W
    assert conv.dense == outputs_per_clip * 2 * 9  # x C_in x 3x3
    assert conv.bias == outputs_per_clip
    assert conv.operands[0].spike and conv.operands[0].source == "lif"
    assert conv.operands[0].rate == pytest.approx(float(spikes.mean()))
    assert rec["norm"].elements == outputs_per_clip and rec["lif"].elements == 2 * 2 * 16
    report = paper(counter.records())
    (row,) = report.rows
    assert row.mac == 0 and row.ac == pytest.approx((conv.dense + conv.bias) * float(spikes.mean()))
    assert report.total_pj == pytest.approx(row.ac * 0.9)


def test_linear_with_real_input_is_mac_and_with_known_rate_is_ac():
    lin = nn.Sequential(nn.Linear(8, 5))
    with OperationCounter(lin) as counter:
        lin(torch.randn(3, 7, 8))  # 3 "clips" of 7 tokens
    (rec,) = counter.records()
    assert rec.dense == 7 * 5 * 8 and rec.bias == 7 * 5 and not rec.spike_input
    assert paper([rec]).mac == 7 * 5 * 9 and paper([rec]).ac == 0

    class SpikeLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = IFNode(v_threshold=0.5)
            self.fc = nn.Linear(8, 5, bias=False)

        def forward(self, x):  # (B, T, N, C) at the boundary, (T, B, N, C) inside
            return self.fc(self.lif(x.transpose(0, 1)))

    net = SpikeLinear()
    x = torch.zeros(1, 4, 10, 8)  # one clip, exactly 25 % ones after the neuron
    x.view(-1)[::4] = 1.0
    with OperationCounter(net) as counter:
        net(x)
    fc = {r.name: r for r in counter.records()}["fc"]
    assert fc.operands[0].rate == pytest.approx(0.25)
    assert paper(counter.records()).ac == pytest.approx(4 * 10 * 5 * 8 * 0.25)


def test_attention_products_counted_with_their_spike_rates():
    torch.manual_seed(0)
    T, B, N, C, d = 2, 1, 6, 8, 4
    attn = SpikingSelfAttention(C, d, lambda: IFNode(v_threshold=0.5), lambda c, last: TimeBatchNorm(c, T, True, last))
    seen = {}
    for name in ("q_lif", "k_lif", "v_lif"):
        getattr(attn, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name[0], o))

    class Clip(nn.Module):  # (B, T, N, C) at the boundary, as a model takes clips
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, x):
            return self.attn(x.transpose(0, 1))

    with torch.no_grad(), OperationCounter(Clip()) as counter:
        counter.model(torch.randn(B, T, N, C) * 2)
    rec = {r.name: r for r in counter.records()}
    h = C // d
    kv, qm = rec["attn.kv_matmul"], rec["attn.q_matmul"]
    assert kv.dense == T * h * d * d * N and qm.dense == T * h * N * d * d
    q, k, v = seen["q"], seen["k"], seen["v"]  # (T, B, h, N, d)
    coincidences = sum(float(k[t, 0, i, n].sum() * v[t, 0, i, n].sum())
                       for t in range(T) for i in range(h) for n in range(N))
    assert coincidences > 0 and 0 < float(q.mean()) < 1, "the toy input must make Q, K and V fire"
    assert kv.coincident == pytest.approx(coincidences)
    assert qm.operands[0].spike and not qm.operands[1].spike
    assert qm.operands[0].rate == pytest.approx(float(q.mean()))
    rows = {r.name: r for r in full(counter.records()).rows}
    assert rows["attn.kv_matmul"].ac == pytest.approx(coincidences)
    assert rows["attn.q_matmul"].ac == pytest.approx(qm.dense * float(q.mean()))
    assert "attn.kv_matmul" not in {r.name for r in paper(counter.records()).rows}


def test_trace_of_paper_model_matches_flop_counter_and_fvcore():
    model = create_model("svformer_paper")
    records = trace_operations(model, (1, 3, 16, 224, 224))
    dense = sum(r.dense for r in records if r.kind in ("conv", "linear", "matmul"))
    assert dense == count_macs(model, (1, 3, 16, 224, 224)).macs == 38_189_558_784
    # fvcore's 38.346109952 G of the authors' logs = dense MACs + 2 ops per BatchNorm element (spec 2.9).
    bn = sum(r.elements for r in records if r.kind == "norm")
    assert dense + 2 * bn == 38_346_109_952
    assert sum(r.kind == "neuron" for r in records) == 39
    # Every conv/linear directly after a neuron is recognised as a spike layer, the rest as MAC layers.
    mac_layers = {r.name for r in records if r.kind in ("conv", "linear") and not r.spike_input}
    assert mac_layers == {"patch_embed1.proj", "blocks1.0.attn", "blocks1.0.conv2", "blocks2.0.attn",
                          "blocks2.0.conv2", "local.pwconv", "head"}
