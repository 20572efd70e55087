"""Folding constant per-channel affine steps that follow a Conv or Gemm into its weight and bias.

PP-OCR's MobileOne blocks scale and shift every convolution's output by learned constants
(Conv → Mul(a) → Add(b)); onnxruntime leaves those nodes in the graph, and in a quantized graph
they cost a requantization each. Conv(x, W, β)·a + b = Conv(x, a·W, a·β + b) when a and b vary at
most along the output channels, so the layer is compressed with the weights the model really
applies, and the nodes go.
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
        weight = node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if (weight not in inits or weight in overridable or len(consumers[weight]) != 1
                or (bias is not None and (bias not in inits or bias in overridable or len(consumers[bias]) != 1))):
            continue
        W = numpy_helper.to_array(inits[weight])
        if not np.issubdtype(W.dtype, np.floating):
            continue
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
            if step.op_type in ("Mul", "Div"):
                f = v if step.op_type == "Mul" else 1.0 / v
                scale, shift = scale * f, shift * f
            else:
                shift = shift + (v if step.op_type == "Add" else -v)
            node.output[0] = step.output[0]
            removed.add((step.op_type, step.output[0]))
            constants.add(other)
            consumers[node.output[0]] = consumers.get(step.output[0], [])
            folded += 1
        if not folded:
            continue
        Wf = W.astype(np.float64) * (scale[None, :] if gemm_cols else scale.reshape((-1,) + (1,) * (W.ndim - 1)))
        inits[weight].CopyFrom(numpy_helper.from_array(Wf.astype(W.dtype), weight))
        name = bias or f"{node_name(node)}.folded_bias"
        b_new = numpy_helper.from_array(shift.astype(W.dtype), name)
        if bias is None:
            g.initializer.append(b_new)
            set_bias(node, name)
        else:
            inits[bias].CopyFrom(b_new)
        for a in node.attribute:
            if a.name in ("alpha", "beta"):
                a.f = 1.0
    remove_nodes(g, removed)
    drop_unused_initializers(model, among=constants)
    return len(removed)
