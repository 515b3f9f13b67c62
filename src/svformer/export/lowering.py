"""Convolutions rewritten as matrix products in an ONNX graph, for runtimes without a Conv for its dtype.

ONNX Runtime's CPU provider has a Conv kernel for float32 only. `convs_as_matmuls(proto)` replaces every
Conv node by ops it also runs in float64: the input padded (Pad) and moved channels-last (Transpose);
for each kernel offset, the strided window that offset sees (Slice) times that offset's weights (a
MatMul with a (C, M) matrix; per group, batched, for a grouped convolution; a channel-wise Mul for a
depthwise one), added to the running sum (Add); then the bias added and the channels moved back. Every
other node, and so the rest of the graph's arithmetic, is kept as it is.

`svformer.export.verify` uses it to run an exported graph in float64, where no spike lies within rounding
of its threshold, so the graph's logits can be checked against PyTorch's with rounding out of the way.
"""
from __future__ import annotations

import itertools

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


def _offset_weights(weight: np.ndarray, group: int) -> np.ndarray:
    """A Conv weight (M, C/group, *k) rearranged for one product per kernel offset: (*k, C) when each
    group has one input and one output channel (depthwise: a channel-wise Mul), else (*k, C, M) for one
    group and (*k, group, C/group, M/group) for several (a MatMul, batched over the groups)."""
    m, per_group = weight.shape[:2]
    k = weight.ndim - 2
    if per_group == 1 and m == group:
        return np.moveaxis(weight[:, 0], 0, -1).copy()
    grouped = weight.reshape(group, m // group, per_group, *weight.shape[2:])  # (g, M/g, C/g, *k)
    grouped = np.moveaxis(grouped, (0, 1, 2), (k, k + 2, k + 1))  # (*k, g, C/g, M/g)
    return (grouped[..., 0, :, :] if group == 1 else grouped).copy()


def _lower_conv(node, weight: np.ndarray, prefix: str):
    """(nodes, initializers) computing ``node`` (a Conv whose weight is the constant ``weight``).

    The nodes run offset by offset (window, product, running sum), so a sequential runtime keeps only a
    few maps alive at a time."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad != "NOTSET":
        raise ValueError(f"Conv node {node.name!r}: auto_pad {auto_pad} is not supported; give explicit pads")
    dims = weight.ndim - 2
    kernel = weight.shape[2:]
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    pads = list(attrs.get("pads", [0] * (2 * dims)))
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), prefix + name))
        return prefix + name

    nodes, x = [], node.input[0]
    if any(pads):
        nodes.append(helper.make_node("Pad", [x, const("pads", np.array([0, 0, *pads[:dims], 0, 0, *pads[dims:]],
                                                                         dtype=np.int64))], [prefix + "padded"]))
        x = prefix + "padded"
    nodes.append(helper.make_node("Transpose", [x], [prefix + "last"], perm=[0, *range(2, dims + 2), 1]))
    axes = const("axes", np.arange(1, dims + 1, dtype=np.int64))
    steps = const("steps", np.array(strides, dtype=np.int64))
    group = attrs.get("group", 1)
    matrices = _offset_weights(weight, group)
    depthwise = matrices.ndim == dims + 1
    if group > 1 and not depthwise:  # channels-last maps (..., C) as (..., g, 1, C/g) for a batched MatMul
        split = const("split", np.array([0] * (dims + 1) + [group, 1, -1], dtype=np.int64))
        merge = const("merge", np.array([0] * (dims + 1) + [-1], dtype=np.int64))
    total = None
    for i, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        # The window of offset o along an axis: o*d, o*d + s, ... up to the last position whose kernel
        # still fits, i.e. ending (k-1-o)*d before the padded input's end.
        starts = [o * d for o, d in zip(offset, dilations)]
        ends = [-(k - 1 - o) * d if (k - 1 - o) * d else _INT64_MAX for o, d, k in zip(offset, dilations, kernel)]
        window, product = f"{prefix}window{i}", f"{prefix}product{i}"
        nodes.append(helper.make_node("Slice", [prefix + "last", const(f"starts{i}", np.array(starts, np.int64)),
                                                const(f"ends{i}", np.array(ends, np.int64)), axes, steps], [window]))
        matrix = const(f"matrix{i}", matrices[offset])
        if depthwise:
            nodes.append(helper.make_node("Mul", [window, matrix], [product]))
        elif group == 1:
            nodes.append(helper.make_node("MatMul", [window, matrix], [product]))
        else:
            nodes.append(helper.make_node("Reshape", [window, split], [window + "g"]))
            nodes.append(helper.make_node("MatMul", [window + "g", matrix], [product + "g"]))
            nodes.append(helper.make_node("Reshape", [product + "g", merge], [product]))
        if total is not None:
            nodes.append(helper.make_node("Add", [total, product], [f"{prefix}sum{i}"]))
            product = f"{prefix}sum{i}"
        total = product
    if len(node.input) > 2 and node.input[2]:
        nodes.append(helper.make_node("Add", [total, node.input[2]], [prefix + "biased"]))
        total = prefix + "biased"
    nodes.append(helper.make_node("Transpose", [total], [node.output[0]], perm=[0, dims + 1, *range(1, dims + 1)]))
    return nodes, inits


def convs_as_matmuls(proto):
    """A copy of the ONNX ModelProto ``proto`` with every Conv node of its main graph computed by Pad,
    Transpose, Slice, MatMul (or Mul), Reshape and Add (see the module docstring): the same function, in
    ops ONNX Runtime has in float64. Each Conv's weight must be an initializer (it is in svformer's
    exports)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inside = [f.name for f in model.functions if any(node.op_type == "Conv" for node in f.node)]
    if inside:
        raise ValueError(f"Conv nodes inside the model's functions ({', '.join(inside)}): inline them first")
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes, lowered = [], set()
    for n, node in enumerate(graph.node):
        if node.op_type != "Conv":
            nodes.append(node)
            continue
        if node.input[1] not in weights:
            raise ValueError(f"Conv node {node.name!r}: its weight {node.input[1]!r} is not a constant")
        new_nodes, inits = _lower_conv(node, numpy_helper.to_array(weights[node.input[1]]), f"lowered{n}/")
        nodes.extend(new_nodes)
        graph.initializer.extend(inits)
        lowered.add(node.input[1])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name not in lowered or init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model
