"""Writing low-rank weights, Ŵ = A B (A: rows × r, B: r × cols in the layer's view).

`store_low_rank` writes the layer as two smaller nodes that run faster than the dense one:

    Conv k×k  →  Conv k×k with r filters (the old strides, pads, dilations)  →  Conv 1×1
    Gemm      →  Gemm(x, B, transB=1, alpha)  →  Gemm(·, A, C, transB=1, beta)
    MatMul    →  MatMul(x, Bᵀ)  →  MatMul(·, Aᵀ)

The second node keeps the original node's name, output and bias, so whatever reads the layer
(and the bias correction) is unchanged. Each factor may be stored quantized, as a layer of its
own (codes + DequantizeLinear).

`add_low_rank_part` adds A B to whatever the layer's weight is (quantized codes, a sparse part)
as a constant subgraph, MatMul(factors) [→ Reshape] → Add: the file holds the small factors and
onnxruntime folds the sum when it loads the model (a form for size, not speed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .nodes import node_name
from .qdq import store_quantized
from .write import drop_unused_initializers


def store_low_rank(model: onnx.ModelProto, layer, A: np.ndarray, B: np.ndarray, quantized=None) -> None:
    """Replace every node of `layer` (one group) by its two-node low-rank form, in place.
    `quantized`, if given, is (grid of A, grid of B, bits, symmetric): each factor is then stored
    as its codes on that per-row grid."""
    if layer.groups != 1:
        raise ValueError(f"{layer.weight}: low-rank is written for ungrouped layers only")
    g = model.graph
    name = layer.weight
    first_w, second_w, axis = layer.kind.factor_layouts(layer, A, B)
    g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(first_w, np.float32), f"{name}.lr_in"),
                          numpy_helper.from_array(np.ascontiguousarray(second_w, np.float32), f"{name}.lr_out")])
    nodes = set(layer.nodes)
    for node in [n for n in g.node if node_name(n) in nodes]:
        mid = f"{node.output[0]}.lr"
        first = helper.make_node(node.op_type, [node.input[0], f"{name}.lr_in"], [mid], name=f"{node_name(node)}.lr_in")
        layer.kind.split_attributes(layer, node, first)
        node.input[0], node.input[1] = mid, f"{name}.lr_out"
        g.node.insert(list(g.node).index(node), first)
    drop_unused_initializers(model, among={name})
    if quantized is not None:
        grid_a, grid_b, bits, symmetric = quantized
        codes_in, codes_out, _ = layer.kind.factor_layouts(layer, grid_a.codes(A), grid_b.codes(B))
        for tensor, codes, grid in ((f"{name}.lr_in", codes_in, grid_b), (f"{name}.lr_out", codes_out, grid_a)):
            store_quantized(model, tensor, axis, codes, grid.scale, grid.zero, bits, symmetric)


def add_low_rank_part(model: onnx.ModelProto, layer, A: np.ndarray, B: np.ndarray) -> str | None:
    """Add A B (in the weight's layout) to the weight every node of `layer` reads, in place. The
    tensor that held the weight is renamed `<tensor>.base`; returns that name when it is an
    initializer (a sparse part, to store sparse), else None."""
    if layer.groups != 1:
        raise ValueError(f"{layer.weight}: a low-rank part is written for ungrouped layers only")
    g = model.graph
    name = layer.weight
    left, right = layer.kind.product_layout(layer, A, B)
    g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(left, np.float32), f"{name}.plus_left"),
                          numpy_helper.from_array(np.ascontiguousarray(right, np.float32), f"{name}.plus_right")])
    product = f"{name}.plus"
    new = [helper.make_node("MatMul", [f"{name}.plus_left", f"{name}.plus_right"], [product],
                            name=f"{product}.matmul")]
    if len(layer.weight_shape) > 2:  # the product is flattened after the first axis
        g.initializer.append(numpy_helper.from_array(np.asarray(layer.weight_shape, np.int64), f"{name}.plus_shape"))
        new.append(helper.make_node("Reshape", [product, f"{name}.plus_shape"], [f"{product}.reshaped"],
                                    name=f"{product}.reshape"))
        product = f"{product}.reshaped"
    for k, node in enumerate(new):
        g.node.insert(k, node)
    nodes = set(layer.nodes)
    read = list(dict.fromkeys(n.input[1] for n in g.node if node_name(n) in nodes))
    renamed = None
    for tensor in read:
        base = f"{tensor}.base"
        producer = next((n for n in g.node if tensor in n.output), None)
        if producer is not None:
            producer.output[list(producer.output).index(tensor)] = base
            at = list(g.node).index(producer) + 1
        else:
            init = next(t for t in g.initializer if t.name == tensor)
            init.name, renamed, at = base, base, len(new)
        g.node.insert(at, helper.make_node("Add", [base, product], [tensor], name=f"{tensor}.add_low_rank"))
    return renamed
