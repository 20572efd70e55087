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

from .kinds import KINDS
from .nodes import node_name, subgraphs


@dataclass
class Layer:
    weight: str  # initializer name
    op: str  # its kind's op type: "Conv" | "Gemm" | "MatMul" (graph/kinds)
    nodes: list  # names of the nodes that use it
    activations: list  # each node's activation input
    weight_shape: tuple
    groups: int = 1
    kernel: tuple = ()
    attrs: list = field(default_factory=list)  # each node's attributes (dict)

    @property
    def kind(self):
        return KINDS[self.op]

    @property
    def rows(self) -> int:
        """Rows of one group's matrix."""
        return self.kind.rows(self)

    @property
    def cols(self) -> int:
        return self.kind.cols(self)

    @property
    def input_channels(self) -> int:
        """The input channels N:M groups and 4-blocks run along."""
        return self.kind.input_channels(self)

    @property
    def output_axis(self) -> int:
        """The axis of the ONNX weight tensor that indexes output channels (the view's rows)."""
        return self.kind.output_axis(self)

    def matrices(self, w: np.ndarray) -> list:
        """The weight as one (rows, cols) matrix per group."""
        return self.kind.matrices(self, w)

    def weight_from(self, mats: list) -> np.ndarray:
        """Inverse of `matrices`: the ONNX weight tensor from per-group matrices."""
        return self.kind.weight_from(self, mats)

    def hessian_inputs(self, x: np.ndarray) -> list:
        """One node's activation as sample matrices (samples × cols), one per group."""
        return self.kind.hessian_inputs(self, self.attrs[0], x)


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
        kind = KINDS.get(node.op_type)
        if kind is None or node.domain not in ("", "ai.onnx"):
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
        reason = kind.problem(a, shape)
        if reason:
            skipped.append(Skipped(name, node.op_type, reason))
            continue
        layer = found.get(wname)
        groups = kind.groups(a)
        if layer is None:
            found[wname] = Layer(wname, node.op_type, [name], [act], shape, groups, kind.kernel(shape), [a])
        elif layer.op != node.op_type or layer.groups != groups or kind.view_key(layer.attrs[0]) != kind.view_key(a):
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
        if owner is not None and node.op_type in KINDS:
            out.append(Skipped(node_name(node), node.op_type, f"inside the subgraph of {owner.op_type} "
                                                              f"{node_name(owner)!r}: only the top-level graph is "
                                                              "compressed"))
        for g in subgraphs(node):
            out += _in_subgraphs(g, node if owner is None else owner)
    return out


def weight_array(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)
