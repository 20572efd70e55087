"""Writing a low-rank layer Ŵ = A B (A: rows × r, B: r × cols in the layer's view) as two
smaller nodes that run faster than the dense one:

    Conv k×k  →  Conv k×k with r filters (the old strides, pads, dilations)  →  Conv 1×1
    Gemm      →  Gemm(x, B, transB=1, alpha)  →  Gemm(·, A, C, transB=1, beta)
    MatMul    →  MatMul(x, Bᵀ)  →  MatMul(·, Aᵀ)

The second node keeps the original node's name, output and bias, so whatever reads the layer
(and the bias correction) is unchanged."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .nodes import node_name
from .write import drop_unused_initializers

_FIRST_ONLY = ("strides", "pads", "dilations", "auto_pad", "kernel_shape", "group")


def store_low_rank(model: onnx.ModelProto, layer, A: np.ndarray, B: np.ndarray) -> None:
    """Replace every node of `layer` (one group) by its two-node low-rank form, in place."""
    if layer.groups != 1:
        raise ValueError(f"{layer.weight}: low-rank is written for ungrouped layers only")
    g = model.graph
    r = A.shape[1]
    name = layer.weight
    if layer.op == "Conv":
        c_in = layer.weight_shape[1]
        first_w = np.moveaxis(B.reshape((r,) + tuple(layer.kernel) + (c_in,)), -1, 1)
        second_w = A.reshape(A.shape + (1,) * len(layer.kernel))
    elif layer.op == "Gemm":
        first_w, second_w = B, A
    else:
        first_w, second_w = B.T, A.T
    g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(first_w, np.float32), f"{name}.lr_in"),
                          numpy_helper.from_array(np.ascontiguousarray(second_w, np.float32), f"{name}.lr_out")])
    nodes = set(layer.nodes)
    for node in [n for n in g.node if node_name(n) in nodes]:
        mid = f"{node.output[0]}.lr"
        first = helper.make_node(node.op_type, [node.input[0], f"{name}.lr_in"], [mid], name=f"{node_name(node)}.lr_in")
        if node.op_type == "Conv":
            first.attribute.extend(a for a in node.attribute if a.name in _FIRST_ONLY)
            keep = [a for a in node.attribute if a.name not in _FIRST_ONLY]
            del node.attribute[:]
            node.attribute.extend(keep + [helper.make_attribute("kernel_shape", [1] * len(layer.kernel))])
        elif node.op_type == "Gemm":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            first.attribute.extend([helper.make_attribute("alpha", float(attrs.get("alpha", 1.0))),
                                    helper.make_attribute("transB", 1)])
            del node.attribute[:]
            node.attribute.extend([helper.make_attribute("beta", float(attrs.get("beta", 1.0))),
                                   helper.make_attribute("transB", 1)])
        node.input[0], node.input[1] = mid, f"{name}.lr_out"
        g.node.insert(list(g.node).index(node), first)
    drop_unused_initializers(model, among={name})
