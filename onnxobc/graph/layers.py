"""Compressible layers and their 2-D weight views.

A layer is one constant weight (Conv, Gemm, or MatMul with a constant B) with every node that
uses it. Its view follows DESIGN.md: rows = output channels, cols = the reduction dimension;
Conv weights (C_out, C_in/g, k…) become (C_out, k… · C_in/g) with columns ordered
(kernel positions, input channels) — so N:M groups and 4-blocks run along input channels — and
a grouped Conv is one sub-problem per group, each with its own Hessian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .nodes import node_name, subgraphs


@dataclass
class Layer:
    weight: str  # initializer name
    op: str  # "Conv" | "Gemm" | "MatMul"
    nodes: list  # names of the nodes that use it
    activations: list  # each node's activation input
    weight_shape: tuple
    groups: int = 1
    kernel: tuple = ()
    attrs: list = field(default_factory=list)  # each node's attributes (dict)

    @property
    def rows(self) -> int:
        """Rows of one group's matrix."""
        s = self.weight_shape
        if self.op == "Conv":
            return s[0] // self.groups
        if self.op == "Gemm" and self.attrs[0].get("transB", 0):
            return s[0]
        return s[1]

    @property
    def cols(self) -> int:
        s = self.weight_shape
        if self.op == "Conv":
            return int(np.prod(s[1:]))
        if self.op == "Gemm" and self.attrs[0].get("transB", 0):
            return s[1]
        return s[0]

    def matrices(self, w: np.ndarray) -> list:
        """The weight as one (rows, cols) matrix per group."""
        if self.op == "Conv":
            m = np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)  # (C_out, k…, C_in/g)
            return [np.ascontiguousarray(g) for g in np.split(m, self.groups, axis=0)]
        if self.op == "Gemm" and self.attrs[0].get("transB", 0):
            return [np.ascontiguousarray(w)]
        return [np.ascontiguousarray(w.T)]

    def weight_from(self, mats: list) -> np.ndarray:
        """Inverse of `matrices`: the ONNX weight tensor from per-group matrices."""
        if self.op == "Conv":
            m = np.concatenate(mats, axis=0)
            s = self.weight_shape
            return np.ascontiguousarray(np.moveaxis(m.reshape((s[0],) + tuple(s[2:]) + (s[1],)), -1, 1))
        if self.op == "Gemm" and self.attrs[0].get("transB", 0):
            return np.ascontiguousarray(mats[0])
        return np.ascontiguousarray(mats[0].T)


@dataclass
class Skipped:
    name: str  # node or weight
    op: str
    reason: str


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def discover(model: onnx.ModelProto):
    """(layers, skipped): every compressible weight of the top-level graph, and every Conv,
    Gemm or MatMul left alone (subgraphs' too) with the reason."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - set(inits)
    found: dict[str, Layer] = {}
    skipped: list[Skipped] = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        name = node_name(node)
        a = _attrs(node)
        act, wname = node.input[0], node.input[1]
        if node.input[0] in inits and wname not in inits:
            skipped.append(Skipped(name, node.op_type, "the constant is the left operand (weight on the left)"))
            continue
        if wname in graph_inputs:
            skipped.append(Skipped(name, node.op_type, f"weight {wname!r} is a graph input, not a constant"))
            continue
        if wname not in inits:
            skipped.append(Skipped(name, node.op_type, f"weight {wname!r} is computed in the graph, not a constant"))
            continue
        t = inits[wname]
        if t.data_type != onnx.TensorProto.FLOAT:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            skipped.append(Skipped(name, node.op_type, f"weight {wname!r} is {dtype}, only float32 is compressed"))
            continue
        shape = tuple(t.dims)
        reason = _unsupported(node.op_type, a, shape)
        if reason:
            skipped.append(Skipped(name, node.op_type, reason))
            continue
        layer = found.get(wname)
        groups = int(a.get("group", 1)) if node.op_type == "Conv" else 1
        if layer is None:
            found[wname] = Layer(wname, node.op_type, [name], [act], shape, groups, shape[2:] if node.op_type == "Conv"
                                 else (), [a])
        elif layer.op != node.op_type or layer.groups != groups or _view_key(layer.attrs[0]) != _view_key(a):
            skipped.append(Skipped(name, node.op_type, f"weight {wname!r} is shared with a node that views it "
                                                       f"differently ({layer.op} {layer.nodes[0]})"))
        else:
            layer.nodes.append(name)
            layer.activations.append(act)
            layer.attrs.append(a)
    return list(found.values()), skipped + _in_subgraphs(graph)


def _in_subgraphs(graph, owner=None) -> list:
    """The Conv, Gemm and MatMul nodes inside subgraphs (If branches, Loop and Scan bodies)."""
    out = []
    for node in graph.node:
        if owner is not None and node.op_type in ("Conv", "Gemm", "MatMul"):
            out.append(Skipped(node_name(node), node.op_type, f"inside the subgraph of {owner.op_type} "
                                                              f"{node_name(owner)!r}: only the top-level graph is "
                                                              "compressed"))
        for g in subgraphs(node):
            out += _in_subgraphs(g, node if owner is None else owner)
    return out


def _view_key(a: dict):
    return a.get("transB", 0)


def _unsupported(op, a, shape):
    if op == "Conv":
        if len(shape) < 3:
            return f"Conv weight of rank {len(shape)}"
        if shape[0] % int(a.get("group", 1)):
            return "Conv output channels not divisible by group"
        return None
    if len(shape) != 2:
        return f"{op} weight of rank {len(shape)} (batched weights are not compressed)"
    if op == "Gemm" and a.get("transA", 0):
        return "Gemm with transA = 1"
    return None


def weight_array(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)
