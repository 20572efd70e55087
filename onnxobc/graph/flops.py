"""Analytic cost of a layer: multiply-accumulates per sample from the inferred output shapes."""

from __future__ import annotations

import onnx

from ..errors import OptionError


def _dims(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def output_shapes(model: onnx.ModelProto, input_shapes: dict | None = None) -> dict:
    """Output shape of every value onnx's shape inference can tell (None for unknown dims),
    with the graph inputs named in `input_shapes` fixed to those shapes."""
    if input_shapes:
        model = _with_input_shapes(model, input_shapes)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model onnx cannot infer still has layers; their cost is just unknown
        inferred = model
    g = inferred.graph
    return {vi.name: _dims(vi) for vi in list(g.value_info) + list(g.output) + list(g.input)}


def _with_input_shapes(model, input_shapes):
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
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
