"""Codebook storage (codebooks, binary, ternary): a weight becomes packed integer indices plus a
small table of values, and a constant subgraph that rebuilds the float weight under its old name:

    codes (uint8, 8/b indices per byte) → BitShift → Mod 2^b → Slice → Cast → Reshape
        → Gather(values) → weight                                  one table for the layer
        → Gather(pattern) → Mul(scale per output channel)          tables c_i · pattern (binary, ternary)
        → Add(Range offsets) → Gather(tables, one per channel)     any other tables

b is 1, 2, 4 or 8 bits, the fewest that hold the codebook's size. Every input is constant, so
onnxruntime folds the subgraph once when it loads the model and runs the layer on the float
weight: the file shrinks, the speed does not change. Needs opset 13."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .nodes import replace_initializer

OPSET = 13


def index_bits(k: int) -> int:
    """Bits per stored index for a k-value codebook."""
    return next(b for b in (1, 2, 4, 8) if k <= 2 ** b)


def _form(values: np.ndarray) -> tuple:
    """How the tables are stored: ("shared", table), ("scaled", pattern, scale per channel) when
    every table is exactly its last value times one pattern, or ("rows", tables)."""
    if np.all(values == values[:1]):
        return "shared", values[0]
    scale = values[:, -1]
    pattern = (values[0] / scale[0]).astype(np.float32)
    if np.all(scale > 0) and np.array_equal(scale[:, None] * pattern, values):
        return "scaled", pattern, scale
    return "rows", values


def store_codebook(model: onnx.ModelProto, layer, codes: np.ndarray, values: np.ndarray) -> None:
    """Replace the layer's float initializer by its codebook form, in place. `codes`: integer
    indices in the weight's layout; `values`: (output channels, k) ascending, one table per
    output channel."""
    g = model.graph
    inits, nodes = _codebook_form(layer, codes, values)
    replace_initializer(g, layer.weight, inits)
    for i, node in enumerate(nodes):
        g.node.insert(i, node)


def _codebook_form(layer, codes: np.ndarray, values: np.ndarray) -> tuple:
    """(initializers, nodes) that rebuild the weight from `codes` and `values`."""
    name = layer.weight
    values = np.asarray(values, np.float32)
    k = values.shape[1]
    b = index_bits(k)
    flat = np.asarray(codes).astype(np.uint8).ravel()
    n = flat.size
    along = [-1 if d == layer.output_axis else 1 for d in range(codes.ndim)]  # broadcast over output channels
    inits = [numpy_helper.from_array(np.asarray(codes.shape, np.int64), f"{name}.cb_shape")]
    nodes = []
    if b == 8:
        inits.append(numpy_helper.from_array(flat, f"{name}.cb_codes"))
        unpacked = f"{name}.cb_codes"
    else:
        per = 8 // b
        pad = np.zeros(-n % per, np.uint8)
        lanes = np.concatenate([flat, pad]).reshape(-1, per).astype(np.uint16)
        packed = (lanes << (b * np.arange(per, dtype=np.uint16))).sum(axis=1).astype(np.uint8)
        inits += [numpy_helper.from_array(packed.reshape(-1, 1), f"{name}.cb_codes"),
                  numpy_helper.from_array((b * np.arange(per)).astype(np.uint8).reshape(1, -1), f"{name}.cb_shifts"),
                  numpy_helper.from_array(np.array([2 ** b], np.uint8), f"{name}.cb_modulus"),
                  numpy_helper.from_array(np.array([-1], np.int64), f"{name}.cb_flat"),
                  numpy_helper.from_array(np.array([0], np.int64), f"{name}.cb_start"),
                  numpy_helper.from_array(np.array([n], np.int64), f"{name}.cb_end")]
        nodes += [
            helper.make_node("BitShift", [f"{name}.cb_codes", f"{name}.cb_shifts"], [f"{name}.cb_shifted"],
                             direction="RIGHT"),
            helper.make_node("Mod", [f"{name}.cb_shifted", f"{name}.cb_modulus"], [f"{name}.cb_lanes"]),
            helper.make_node("Reshape", [f"{name}.cb_lanes", f"{name}.cb_flat"], [f"{name}.cb_padded"]),
            helper.make_node("Slice", [f"{name}.cb_padded", f"{name}.cb_start", f"{name}.cb_end"],
                             [f"{name}.cb_unpacked"]),
        ]
        unpacked = f"{name}.cb_unpacked"
    idx = f"{name}.cb_index"
    nodes += [helper.make_node("Cast", [unpacked], [f"{name}.cb_long"], to=TensorProto.INT64),
              helper.make_node("Reshape", [f"{name}.cb_long", f"{name}.cb_shape"], [idx])]
    form = _form(values)
    if form[0] == "shared":
        inits.append(numpy_helper.from_array(form[1], f"{name}.cb_values"))
        nodes.append(helper.make_node("Gather", [f"{name}.cb_values", idx], [name], axis=0))
    elif form[0] == "scaled":
        inits += [numpy_helper.from_array(form[1], f"{name}.cb_values"),
                  numpy_helper.from_array(form[2].reshape(along), f"{name}.cb_scale")]
        nodes += [helper.make_node("Gather", [f"{name}.cb_values", idx], [f"{name}.cb_unit"], axis=0),
                  helper.make_node("Mul", [f"{name}.cb_unit", f"{name}.cb_scale"], [name])]
    else:
        scalar = lambda v, tag: numpy_helper.from_array(np.array(v, np.int64), f"{name}.cb_{tag}")  # noqa: E731
        inits += [numpy_helper.from_array(values.ravel(), f"{name}.cb_values"), scalar(0, "zero"),
                  scalar(values.size, "size"), scalar(k, "k"),
                  numpy_helper.from_array(np.array(along, np.int64), f"{name}.cb_along")]
        nodes += [helper.make_node("Range", [f"{name}.cb_zero", f"{name}.cb_size", f"{name}.cb_k"],
                                   [f"{name}.cb_starts"]),
                  helper.make_node("Reshape", [f"{name}.cb_starts", f"{name}.cb_along"], [f"{name}.cb_offsets"]),
                  helper.make_node("Add", [idx, f"{name}.cb_offsets"], [f"{idx}.row"]),
                  helper.make_node("Gather", [f"{name}.cb_values", f"{idx}.row"], [name], axis=0)]
    for node in nodes:
        node.name = node.output[0]
    return inits, nodes
