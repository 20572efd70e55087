"""Folding a per-output-channel shift into a layer's nodes: the Conv bias, Gemm's C, or an Add
after a MatMul (which has no bias of its own)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .nodes import consumers, node_name, set_bias


def add_output_shift(model: onnx.ModelProto, layer, shift: np.ndarray) -> None:
    """Add `shift` (one value per output channel) to the output of every node of `layer`, in place."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users = consumers(g)
    by_name = {node_name(n): n for n in g.node}
    for k, name in enumerate(layer.nodes):
        node = by_name[name]
        if not layer.kind.has_bias_input:  # a MatMul: its bias is an Add after it, if any
            bias = matmul_bias(model, node, len(shift))
            if bias is not None and len(users[bias]) == 1:
                old = numpy_helper.to_array(inits[bias])
                inits[bias].CopyFrom(numpy_helper.from_array((old + shift).astype(old.dtype), bias))
            else:
                _add_after(g, node, shift, f"{layer.weight}.shift{k}", layer.kind.channel_shape(layer))
            continue
        step = layer.kind.bias_step(layer.attrs[k], shift)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if bias is None:
            g.initializer.append(numpy_helper.from_array(step.astype(np.float32), f"{layer.weight}.bias{k}"))
            set_bias(node, f"{layer.weight}.bias{k}")
        elif bias in inits and len(users[bias]) == 1:
            old = numpy_helper.to_array(inits[bias])
            inits[bias].CopyFrom(numpy_helper.from_array((old + step).astype(old.dtype), bias))
        else:  # a computed or shared bias: leave it, add after
            _add_after(g, node, step, f"{layer.weight}.shift{k}", layer.kind.channel_shape(layer))


def feeds_batch_norm(model: onnx.ModelProto, layer) -> bool:
    """Whether every node of `layer` feeds only a BatchNormalization (directly, as its input):
    inference-mode BN normalizes with fixed statistics, so a compressed channel's variance
    change would pass through it."""
    names = set(layer.nodes)
    outs = [n.output[0] for n in model.graph.node if node_name(n) in names]
    graph_outputs = {o.name for o in model.graph.output}
    for out in outs:
        users = [n for n in model.graph.node if out in n.input]
        if out in graph_outputs or not users or any(u.op_type != "BatchNormalization" or u.input[0] != out
                                                    for u in users):
            return False
    return bool(outs)


def matmul_bias(model: onnx.ModelProto, node, channels: int) -> str | None:
    """The initializer a MatMul's output is added to, when its only consumer is an Add of a
    constant vector with one entry per output channel (a linear layer's bias)."""
    g = model.graph
    out = node.output[0]
    if out in {o.name for o in g.output}:
        return None
    users = [n for n in g.node if out in n.input]
    if len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
        return None
    other = users[0].input[1] if users[0].input[0] == out else users[0].input[0]
    inits = {t.name: t for t in g.initializer}
    if other not in inits or len(inits[other].dims) != 1:
        return None
    return other if inits[other].dims[0] == channels else None


def _add_after(g, node, shift, name, shape):
    """out ← out + shift, broadcast over the output's channel axis (`shape`: (C, 1, …) for a Conv)."""
    values = shift.astype(np.float32).reshape(shape)
    g.initializer.append(numpy_helper.from_array(values, name))
    out = node.output[0]
    node.output[0] = f"{out}.before_shift"
    idx = list(g.node).index(node)
    g.node.insert(idx + 1, helper.make_node("Add", [node.output[0], name], [out], name=f"{name}.add"))
