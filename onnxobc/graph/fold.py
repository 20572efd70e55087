"""Folding constant per-channel affine steps into the Conv or Gemm next to them.

PP-OCR's MobileOne blocks scale and shift every convolution's output by learned constants
(Conv → Mul(a) → Add(b)); onnxruntime leaves those nodes in the graph, and in a quantized graph
they cost a requantization each. Conv(x, W, β)·a + b = Conv(x, a·W, a·β + b) when a and b vary at
most along the output channels, so the layer is compressed with the weights the model really
applies, and the nodes go (fold_output_affine). PP-OCRv4's learnable affine blocks also scale and
shift each activation before the next Conv reads it: those fold into that Conv's input side
(fold_input_affine).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .nodes import consumers as consumers_of
from .nodes import node_name, remove_nodes, set_bias
from .write import drop_unused_initializers

_STEPS = ("Mul", "Add", "Sub", "Div")


def per_channel(value: np.ndarray, rank: int, channels: int, axis: int) -> np.ndarray | None:
    """`value` as one number per output channel, if broadcasting it against an output of rank
    `rank` varies it only along `axis` (and does not grow the output); None otherwise."""
    if value.ndim > rank or not np.issubdtype(value.dtype, np.floating):
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,)).copy()


def _own_parameters(node, inits: dict, overridable: set, readers: dict) -> tuple | None:
    """(weight name, bias name or None, the weight) of `node` where both are float initializers
    that no other node reads and no graph input overrides; None otherwise."""
    weight = node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if (weight not in inits or weight in overridable or len(readers[weight]) != 1
            or (bias is not None and (bias not in inits or bias in overridable or len(readers[bias]) != 1))):
        return None
    W = numpy_helper.to_array(inits[weight])
    return (weight, bias, W) if np.issubdtype(W.dtype, np.floating) else None


def _composed(op: str, v: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> tuple:
    """(scale, shift) of the affine map y = scale·x + shift followed by the step `op` with `v`
    (y op v; Sub and Div with v second)."""
    if op in ("Mul", "Div"):
        f = v if op == "Mul" else 1.0 / v
        return scale * f, shift * f
    return scale, shift + (v if op == "Add" else -v)


def _write_bias(g, inits: dict, node, bias: str | None, values: np.ndarray) -> None:
    """`values` as `node`'s bias: into its initializer, or a new one it then reads."""
    name = bias or f"{node_name(node)}.folded_bias"
    tensor = numpy_helper.from_array(values, name)
    if bias is None:
        g.initializer.append(tensor)
        set_bias(node, name)
    else:
        inits[bias].CopyFrom(tensor)


def fold_output_affine(model: onnx.ModelProto) -> int:
    """Fold every constant Mul/Add/Sub/Div by a per-output-channel value that alone reads a Conv or
    Gemm output into that layer's weight and bias, in place; returns how many nodes went. Weights
    or biases shared with other nodes, graph inputs and graph outputs are left alone."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    overridable = {i.name for i in g.input}
    graph_outputs = {o.name for o in g.output}
    consumers = consumers_of(g)
    removed, constants = set(), set()
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm") or node.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and attrs.get("transA", 0):
            continue
        own = _own_parameters(node, inits, overridable, consumers)
        if own is None:
            continue
        weight, bias, W = own
        gemm_cols = node.op_type == "Gemm" and not attrs.get("transB", 0)  # Gemm weight (K, N): channels are columns
        channels = W.shape[1] if gemm_cols else W.shape[0]
        rank, axis = (2, 1) if node.op_type == "Gemm" else (W.ndim, 1)
        scale = np.full(channels, float(attrs.get("alpha", 1.0)))
        shift = np.zeros(channels)
        if bias is not None:
            b = numpy_helper.to_array(inits[bias])  # Conv: 1-D, one per channel; Gemm: broadcast like C
            b = b.astype(np.float64) if node.op_type == "Conv" else per_channel(b, rank, channels, axis)
            if b is None:
                continue
            shift = b * float(attrs.get("beta", 1.0))
        folded = 0
        while True:
            out = node.output[0]
            users = consumers.get(out, [])
            if out in graph_outputs or len(users) != 1:
                break
            step = users[0]
            if step.op_type not in _STEPS or step.domain not in ("", "ai.onnx") or len(step.input) != 2:
                break
            other = step.input[1] if step.input[0] == out else step.input[0]
            if other == out or other not in inits or other in overridable or (
                    step.op_type in ("Sub", "Div") and step.input[0] != out):
                break
            v = per_channel(numpy_helper.to_array(inits[other]), rank, channels, axis)
            if v is None or (step.op_type == "Div" and np.any(v == 0)):
                break
            scale, shift = _composed(step.op_type, v, scale, shift)
            node.output[0] = step.output[0]
            removed.add((step.op_type, step.output[0]))
            constants.add(other)
            consumers[node.output[0]] = consumers.get(step.output[0], [])
            folded += 1
        if not folded:
            continue
        Wf = W.astype(np.float64) * (scale[None, :] if gemm_cols else scale.reshape((-1,) + (1,) * (W.ndim - 1)))
        inits[weight].CopyFrom(numpy_helper.from_array(Wf.astype(W.dtype), weight))
        _write_bias(g, inits, node, bias, shift.astype(W.dtype))
        for a in node.attribute:
            if a.name in ("alpha", "beta"):
                a.f = 1.0
    remove_nodes(g, removed)
    drop_unused_initializers(model, among=constants)
    return len(removed)


def _input_steps(conv, inits, overridable, outputs, readers, producer, channels, rank) -> tuple:
    """(the constant Mul/Add/Sub/Div nodes, in the order they apply, that make `conv`'s input
    from a tensor nothing else reads on the way; that tensor; per input channel A and B with
    input = A·tensor + B)."""
    steps, t = [], conv.input[0]
    while t in producer and t not in outputs and len(readers.get(t, [])) == 1:
        step = producer[t]
        if step.op_type not in _STEPS or step.domain not in ("", "ai.onnx") or len(step.input) != 2:
            break
        k = next((k for k in (1, 0) if step.input[k] in inits and step.input[k] not in overridable), None)
        if k is None or step.input[1 - k] in inits or (step.op_type in ("Sub", "Div") and k != 1):
            break
        v = per_channel(numpy_helper.to_array(inits[step.input[k]]), rank, channels, 1)
        if v is None or (step.op_type == "Div" and np.any(v == 0)):
            break
        steps.append((step, v))
        t = step.input[1 - k]
    A, B = np.ones(channels), np.zeros(channels)
    for step, v in reversed(steps):
        A, B = _composed(step.op_type, v, A, B)
    return [s for s, _ in reversed(steps)], t, A, B


def fold_input_affine(model: onnx.ModelProto) -> int:
    """Fold the constant per-channel Mul/Add/Sub/Div steps that alone make a Conv's input (PP-OCRv4's
    learnable affine blocks after each activation: x·a + b) into that Conv, in place; returns
    how many nodes went. Conv(A·x + B, W, β) = Conv(x, W·A, β + ΣW·B) where the Conv pads
    nothing; where it pads (with zeros, which the shift B does not reach) the scale still
    folds and one Add of B/A stays before it: A·x + B = A·(x + B/A), and A·0 = 0. Weights or
    biases shared with other nodes, graph inputs and graph outputs are left alone."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    overridable = {i.name for i in g.input}
    outputs = {o.name for o in g.output}
    readers = consumers_of(g)
    producer = {o: n for n in g.node for o in n.output}
    removed, constants, added = set(), set(), []
    for conv in list(g.node):
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            continue
        own = _own_parameters(conv, inits, overridable, readers)
        if own is None:
            continue
        weight, bias, W = own
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        group = int(attrs.get("group", 1))
        steps, source, A, B = _input_steps(conv, inits, overridable, outputs, readers, producer,
                                           W.shape[1] * group, W.ndim)
        padded = any(attrs.get("pads", [])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
        keep_shift = padded and np.any(B != 0)
        if not steps or (keep_shift and (len(steps) == 1 or np.any(A == 0))):
            continue  # nothing to fold, or only the one Add that must stay
        per_out = W.shape[0] // group  # output channels of each group; group k reads input channels k·C..(k+1)·C
        cols = np.arange(W.shape[0])[:, None] // per_out * W.shape[1] + np.arange(W.shape[1])[None, :]
        expand = (slice(None), slice(None)) + (None,) * (W.ndim - 2)
        Wf = W.astype(np.float64) * A[cols][expand]
        shift = np.zeros(W.shape[0]) if bias is None else numpy_helper.to_array(inits[bias]).astype(np.float64)
        if not keep_shift:
            shift = shift + (W.astype(np.float64) * B[cols][expand]).reshape(W.shape[0], -1).sum(axis=1)
        inits[weight].CopyFrom(numpy_helper.from_array(Wf.astype(W.dtype), weight))
        if np.any(shift != 0) or bias is not None:
            _write_bias(g, inits, conv, bias, shift.astype(W.dtype))
        removed |= {(s.op_type, s.output[0]) for s in steps}
        constants |= {i for s in steps for i in s.input if i in inits}
        if keep_shift:
            name = f"{node_name(conv)}.input_shift"
            shape = (1, len(B)) + (1,) * (W.ndim - 2)
            g.initializer.append(numpy_helper.from_array((B / A).reshape(shape).astype(W.dtype), name))
            added.append((conv, helper.make_node("Add", [source, name], [conv.input[0]], name=f"{name}.add")))
        else:
            conv.input[0] = source
    if not removed:
        return 0
    before = {conv.output[0]: add for conv, add in added}  # each kept Add just before its Conv
    nodes = []
    for n in g.node:
        if (n.op_type, n.output[0]) not in removed:
            nodes += ([before[n.output[0]]] if n.op_type == "Conv" and n.output[0] in before else []) + [n]
    del g.node[:]
    g.node.extend(nodes)
    drop_unused_initializers(model, among=constants)
    return len(removed) - len(added)
