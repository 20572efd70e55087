"""One layer alone: a model holding a layer's first node with its weight and bias, at a fixed
input shape, for timing each compression level of that layer on a runtime."""

from __future__ import annotations

import dataclasses

import onnx
from onnx import TensorProto, helper

from .nodes import node_name


def single_layer_model(model: onnx.ModelProto, layer, input_shape) -> tuple:
    """(model, layer view of it) with the node, its constant inputs and the activation input of
    shape `input_shape`; opset and IR version as in `model`."""
    node = next(n for n in model.graph.node if node_name(n) == layer.nodes[0])
    inits = {t.name: t for t in model.graph.initializer}
    consts = [inits[i] for i in node.input[1:] if i in inits]
    inputs = [helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, list(input_shape))]
    inputs += [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in node.input[1:] if i and i not in inits]
    # the output passes through an Identity, as in a real model where other nodes read it (so an
    # int8 form quantizes it and the runtime can fuse the layer as it would in place)
    out = helper.make_tensor_value_info(f"{node.output[0]}.alone", TensorProto.FLOAT, None)
    new = onnx.NodeProto()
    new.CopyFrom(node)
    tail = helper.make_node("Identity", [node.output[0]], [f"{node.output[0]}.alone"])
    graph = helper.make_graph([new, tail], f"{layer.weight}.alone", inputs, [out], consts)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    view = dataclasses.replace(layer, nodes=layer.nodes[:1], activations=layer.activations[:1],
                               attrs=layer.attrs[:1])
    return m, view
