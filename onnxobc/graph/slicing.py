"""Removing channels through a layer group (graph/coupling.py), in place: the producer's rows and
bias (and those of a layer making a gate on them), the channels' values in every op on the way
(BatchNormalization, per-channel constants of Mul/Add/Sub/Div, PRelu, a bias Add), the channels
of depthwise Convs (and their `group`), and the consumers' weights, given as new, narrower
tensors. The result is a smaller dense model: every runtime runs it faster, with no special
kernel."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .nodes import consumers, node_name


def take_channels(model: onnx.ModelProto, group, layers: dict, keep: np.ndarray) -> None:
    """Keep only the channels `keep` (sorted indices) of `group` in its producer and the layers
    that make a gate on them, the ops on the way and its depthwise Convs; the consumers are left
    to set_consumer."""
    g = model.graph
    nodes = {node_name(n): n for n in g.node}
    for weight in [group.producer] + group.gates:
        producer = layers[weight]
        node = nodes[producer.nodes[0]]
        _slice(g, producer.weight, producer.output_axis, keep, node)
        if len(node.input) > 2 and node.input[2]:
            _slice_channel_values(g, node, node.input[2], group.channels, keep, axis_from_end=1)
    for name in group.through:
        op = nodes[name]
        aligned = next(group.aligned[x] for x in op.input if x in group.aligned)
        from_end = aligned.rank - aligned.axis
        if op.op_type == "BatchNormalization":
            for x in op.input[1:5]:
                _slice(g, x, 0, keep, op)
            continue
        for x in op.input:
            if x and x not in group.aligned:
                _slice_channel_values(g, op, x, group.channels, keep, from_end)
    for weight in group.depthwise:
        dw = layers[weight]
        conv = nodes[dw.nodes[0]]
        _slice(g, weight, 0, keep, conv)
        if len(conv.input) > 2 and conv.input[2]:
            _slice(g, conv.input[2], 0, keep, conv)
        for a in conv.attribute:
            if a.name == "group":
                a.i = len(keep)
    stale = set(group.aligned)
    keep_info = [vi for vi in g.value_info if vi.name not in stale]
    del g.value_info[:]
    g.value_info.extend(keep_info)


def set_weight(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace initializer `name` by `value`, whatever its shape."""
    t = next(t for t in model.graph.initializer if t.name == name)
    t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value.astype(numpy_helper.to_array(t).dtype)), name))


def _own(g, name: str, node) -> onnx.TensorProto:
    """The initializer `node` reads as `name`, copied under a name of its own first when other
    nodes read it too (so slicing it changes only `node`)."""
    t = next(t for t in g.initializer if t.name == name)
    if len(consumers(g).get(name, [])) > 1:
        copy = onnx.TensorProto()
        copy.CopyFrom(t)
        copy.name = f"{name}.{node_name(node)}"
        g.initializer.append(copy)  # protobuf appends a copy: hand back the one in the graph
        node.input[list(node.input).index(name)] = copy.name
        return g.initializer[-1]
    return t


def _slice(g, name: str, axis: int, keep: np.ndarray, node) -> None:
    t = _own(g, name, node)
    t.CopyFrom(numpy_helper.from_array(np.take(numpy_helper.to_array(t), keep, axis=axis), t.name))


def _slice_channel_values(g, node, name: str, channels: int, keep: np.ndarray, axis_from_end: int) -> None:
    """A constant broadcast against the channels (the `axis_from_end`-th axis from the end of the
    tensor it meets): sliced where it has one value per channel, left as it is where it has one."""
    t = next((t for t in g.initializer if t.name == name), None)
    if t is None:
        return
    dims = list(t.dims)
    axis = len(dims) - axis_from_end
    if 0 <= axis < len(dims) and dims[axis] == channels:
        _slice(g, name, axis, keep, node)


def take_heads(model: onnx.ModelProto, group, layers: dict, keep: np.ndarray) -> None:
    """Keep only the heads `keep` (sorted) of an attention block (graph/heads.py): the projections'
    rows and biases and the heads in the Reshape shapes; the output projection is left to set_weight."""
    g = model.graph
    nodes = {node_name(n): n for n in g.node}
    rows = (keep[:, None] * group.head_dim + np.arange(group.head_dim)).ravel()
    for weight in group.producers:
        layer = layers[weight]
        _slice(g, weight, layer.output_axis, rows, nodes[layer.nodes[0]])
    for name in group.biases:
        add = nodes[name]
        const = next(x for x in add.input if any(t.name == x for t in g.initializer))
        _slice_channel_values(g, add, const, group.channels * group.head_dim, rows, axis_from_end=1)
    for name in group.splits:
        _set_shape(g, nodes[name], -2, len(keep))
    _set_shape(g, nodes[group.merge], -1, len(keep) * group.head_dim)
    for name, i in group.score_inputs:
        _gather_heads(g, nodes[name], i, group.channels, keep)
    stale = {o for w in group.producers for n in layers[w].nodes for o in nodes[n].output}
    keep_info = [vi for vi in g.value_info if vi.name not in stale]
    del g.value_info[:]
    g.value_info.extend(keep_info)


def _gather_heads(g, node, index: int, heads: int, keep: np.ndarray) -> None:
    """Feed input `index` of `node` (on the attention scores, (…, heads, q, k)) with the heads `keep`
    of what it read: expanded to every head first, as it may broadcast over them."""
    x, base = node.input[index], f"{node_name(node)}.in{index}"
    g.initializer.extend([numpy_helper.from_array(np.array([1, heads, 1, 1], np.int64), f"{base}.heads"),
                          numpy_helper.from_array(keep.astype(np.int64), f"{base}.kept")])
    at = list(g.node).index(node)
    g.node.insert(at, onnx.helper.make_node("Expand", [x, f"{base}.heads"], [f"{base}.every"], name=f"{base}.every"))
    g.node.insert(at + 1, onnx.helper.make_node("Gather", [f"{base}.every", f"{base}.kept"], [f"{base}.kept_heads"],
                                                name=f"{base}.kept_heads", axis=1))
    node.input[index] = f"{base}.kept_heads"


def _set_shape(g, reshape, index: int, value: int) -> None:
    """Set entry `index` of a Reshape's constant shape (its own copy where it is shared)."""
    t = _own(g, reshape.input[1], reshape)
    shape = numpy_helper.to_array(t).copy()
    shape[index] = value
    t.CopyFrom(numpy_helper.from_array(shape, t.name))
