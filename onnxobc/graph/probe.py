"""A probe model for cheap "only this layer compressed" losses: every layer weight becomes a
graph input, and every layer node's output gets an Add of a per-channel shift input, so one
onnxruntime session evaluates any single-layer swap (weights and bias shift) as a feed."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from ..protos import copy
from .nodes import node_name


def shift_input(layer, k: int) -> str:
    return f"{layer.weight}.probe_shift{k}"


def probe_model(model: onnx.ModelProto, layers) -> onnx.ModelProto:
    m = copy(model)
    g = m.graph
    names = {l.weight for l in layers}
    keep = [t for t in g.initializer if t.name not in names]
    dims = {t.name: list(t.dims) for t in g.initializer if t.name in names}
    del g.initializer[:]
    g.initializer.extend(keep)
    for name in sorted(names):
        g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims[name]))
    by_name = {node_name(n): n for n in g.node}
    for l in layers:
        for k, name in enumerate(l.nodes):
            node = by_name[name]
            g.input.append(helper.make_tensor_value_info(shift_input(l, k), TensorProto.FLOAT,
                                                         list(l.kind.channel_shape(l))))
            out = node.output[0]
            node.output[0] = f"{out}.probe_raw"
            idx = list(g.node).index(node)
            g.node.insert(idx + 1, helper.make_node("Add", [node.output[0], shift_input(l, k)], [out],
                                                    name=f"{out}.probe_add"))
    return m
