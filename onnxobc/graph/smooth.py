"""Smoothing of activation outliers into the weights (SmoothQuant): for a tensor x that MatMul or
Gemm layers read along its last axis, x·W = (x / s)·(diag(s) W) for any positive per-channel s.
Dividing x by s flattens the channels whose values are large across the board (hard to quantize
per tensor) and moves that range into the weights' input columns (quantized per output channel,
where it costs little). The float model computes the same.

The division is a Mul by 1/s inserted on the layers' branch alone (the tensor's other readers, a
residual Add or a LayerNorm, still read x); the layers' weights take the scaled columns."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .layers import weight_array
from .nodes import consumers, node_name, replace_initializer

SUFFIX = ".smoothed"  # the divided tensor's name: the tensor's name with this after it


def smoothable(model: onnx.ModelProto, layers) -> dict:
    """{tensor: [layers]} for each tensor that MatMul/Gemm layers read along its last axis and
    that every one of those layers reads alone (a weight read by two tensors takes one scaling),
    their weights read by nothing else."""
    users = consumers(model.graph)
    readers, mixed = {}, set()
    for l in layers:
        acts = set(l.activations)
        if (l.op not in ("MatMul", "Gemm") or len(acts) != 1
                or {node_name(n) for n in users.get(l.weight, [])} != set(l.nodes)):
            mixed |= acts
            continue
        readers.setdefault(next(iter(acts)), []).append(l)
    return {t: ls for t, ls in readers.items() if t not in mixed}


def smooth(model: onnx.ModelProto, readers: dict, scales: dict) -> None:
    """Divide each tensor t of `scales` by its per-channel scales s (a Mul by 1/s named t + SUFFIX,
    read by the nodes of `readers[t]`), and multiply those layers' weight columns by s, in place:
    the model and the layers of `readers`, whose activations become t + SUFFIX."""
    g = model.graph
    for t, s in scales.items():
        s = np.asarray(s, np.float32)
        for l in readers[t]:
            mats = [m * s[None, :] for m in l.matrices(weight_array(model, l.weight))]
            replace_initializer(g, l.weight, [numpy_helper.from_array(l.weight_from(mats).astype(np.float32),
                                                                      l.weight)])
            l.activations = [t + SUFFIX] * len(l.activations)
        g.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), t + ".smooth_inverse"))
    nodes = {n for t in scales for l in readers[t] for n in l.nodes}
    order, divided = [], set()
    for node in g.node:
        if node_name(node) in nodes:
            t = node.input[0]
            if t not in divided:  # just before its first reader, where t is already computed
                order.append(helper.make_node("Mul", [t, t + ".smooth_inverse"], [t + SUFFIX], name=t + SUFFIX))
                divided.add(t)
            node.input[0] = t + SUFFIX
        order.append(node)
    del g.node[:]
    g.node.extend(order)
