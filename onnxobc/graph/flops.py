"""Analytic cost of a layer: multiply-accumulates per sample from the inferred output shapes."""

from __future__ import annotations

import math

import onnx

from ..errors import OptionError
from ..protos import copy


def _dims(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def inferred(model: onnx.ModelProto, input_shapes: dict | None = None) -> dict:
    """Name → (element type, dims: None for unknown ones) of every value onnx's shape inference
    can tell, with the graph inputs named in `input_shapes` fixed to those shapes."""
    if input_shapes:
        model = _with_input_shapes(model, input_shapes)
    try:
        g = onnx.shape_inference.infer_shapes(_skeleton(model)).graph
    except Exception:  # a model onnx cannot infer still has layers; their cost is just unknown
        g = model.graph
    return {vi.name: (vi.type.tensor_type.elem_type, _dims(vi))
            for vi in list(g.value_info) + list(g.output) + list(g.input)}


def output_shapes(model: onnx.ModelProto, input_shapes: dict | None = None) -> dict:
    """Output shape of every value onnx's shape inference can tell (None for unknown dims),
    with the graph inputs named in `input_shapes` fixed to those shapes."""
    return {name: dims for name, (_, dims) in inferred(model, input_shapes).items()}


SHAPE_VALUES = 1024  # initializers up to this many values may carry shapes (Reshape targets, Slice bounds)


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` for shape inference: its larger initializers (weights, whose values no shape
    depends on) declared as graph inputs of their type and shape, so that inference does not
    serialize and copy every weight of the model, twice."""
    g = model.graph
    declared = {i.name for i in g.input}
    small = [t for t in g.initializer if math.prod(t.dims) <= SHAPE_VALUES]
    big = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
           if math.prod(t.dims) > SHAPE_VALUES and t.name not in declared]
    graph = onnx.helper.make_graph(g.node, g.name, list(g.input) + big, g.output, small, value_info=g.value_info,
                                   sparse_initializer=g.sparse_initializer)
    out = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    out.functions.extend(model.functions)
    return out


def _with_input_shapes(model, input_shapes):
    fixed = copy(model)
    inputs = {i.name: i for i in fixed.graph.input}
    for name, dims in input_shapes.items():
        if name not in inputs:
            raise OptionError(f"{{input_shape}} names {name!r}, which is not a graph input "
                             f"(inputs: {', '.join(inputs) or 'none'})")
        shape = inputs[name].type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise OptionError(f"{{input_shape}} {name}: the model's input has rank {len(shape.dim)}, got "
                              f"{len(dims)} dims")
        for d, v in zip(shape.dim, dims):
            d.Clear()
            d.dim_value = v
    return fixed


def parse_input_shapes(specs) -> dict:
    """['x=1,3,224,224', …] → {'x': [1, 3, 224, 224]} with a clear error for anything else."""
    out = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition("=")
        try:
            values = [int(v) for v in dims.split(",")]
        except ValueError:
            values = []
        if not name or not values or min(values) < 1:
            raise OptionError(f"{{input_shape}} must look like NAME=1,3,224,224 with positive dims, got {spec!r}")
        out[name] = values
    return out


def macs_per_sample(layer, node_outputs: list, shapes: dict):
    """Multiply-accumulates of all the layer's nodes for one sample (the leading axis is the
    batch), or None when an output shape is not known statically."""
    total = 0
    for out in node_outputs:
        dims = shapes.get(out)
        if dims is None or len(dims) < 2 or any(d is None for d in dims[1:]):
            return None
        total += layer.kind.positions(dims) * layer.rows * layer.cols * layer.groups
    return total
