"""Convolutions as matrix products (`svformer.export.lowering`): the same function as ONNX Runtime's own
Conv and PyTorch's, in float64 as well, for every padding, stride, dilation, group and 2-D/3-D layout."""
import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from svformer.export.lowering import convs_as_matmuls  # noqa: E402
from svformer.export.onnx import trace  # noqa: E402

CONVS = [
    (torch.nn.Conv2d(6, 4, 3, padding=1), (11, 9)),
    (torch.nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=3), (11, 9)),
    (torch.nn.Conv2d(4, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), bias=False), (11, 9)),
    (torch.nn.Conv2d(3, 5, 6, stride=4, padding=1), (16, 13)),
    (torch.nn.Conv2d(3, 6, 3, padding=1, groups=3), (7, 8)),  # two outputs per input channel
    (torch.nn.Conv3d(4, 4, (3, 2, 2), groups=4, padding=(0, 1, 1)), (5, 7, 6)),
]


def run(proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("conv,size", CONVS, ids=[f"{type(c).__name__}{i}" for i, (c, _) in enumerate(CONVS)])
def test_lowered_conv_equals_the_conv(conv, size):
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, *size)
    proto = trace(conv, (x,), None, ["x"], ["y"])
    lowered = convs_as_matmuls(proto)
    assert "Conv" in {n.op_type for n in proto.graph.node}
    assert "Conv" not in {n.op_type for n in lowered.graph.node}
    want = conv(x).detach().numpy()
    assert np.abs(run(lowered, x.numpy()) - want).max() <= 1e-5 * np.abs(want).max()
    assert np.abs(run(lowered, x.numpy()) - run(proto, x.numpy())).max() <= 1e-5 * np.abs(want).max()

    double = conv.double()  # ONNX Runtime has no float64 Conv: only the lowered graph runs
    proto64 = trace(double, (x.double(),), None, ["x"], ["y"])
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        run(proto64, x.double().numpy())
    want64 = double(x.double()).detach().numpy()
    assert np.abs(run(convs_as_matmuls(proto64), x.double().numpy()) - want64).max() <= 1e-13 * np.abs(want64).max()


def test_lowering_refuses_what_it_cannot_compute():
    from onnx import helper, TensorProto

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c")
    graph = helper.make_graph([node], "g", [x, w], [y])
    with pytest.raises(ValueError, match="Conv node 'c': its weight 'w' is not a constant"):
        convs_as_matmuls(helper.make_model(graph))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 3, 3], np.ones(36, np.float32))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad="SAME_UPPER")
    graph = helper.make_graph([node], "g", [x], [y], initializer=[weight])
    with pytest.raises(ValueError, match="Conv node 'c': auto_pad SAME_UPPER is not supported"):
        convs_as_matmuls(helper.make_model(graph))
    inner = helper.make_function("local", "block", ["x", "w"], ["y"], [helper.make_node("Conv", ["x", "w"], ["y"])],
                                 [helper.make_opsetid("", 18)])
    graph = helper.make_graph([helper.make_node("block", ["x", "w"], ["y"], domain="local")], "g", [x], [y],
                              initializer=[weight])
    with pytest.raises(ValueError, match=r"Conv nodes inside the model's functions \(block\): inline them first"):
        convs_as_matmuls(helper.make_model(graph, functions=[inner]))
