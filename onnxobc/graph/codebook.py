"""Codebook storage (codebooks, binary, ternary): a weight becomes packed integer indices plus a
small table of values, and a constant subgraph that rebuilds the float weight under its old name:

    codes (uint8, 8/b indices per byte) → BitShift → Mod 2^b → Slice → Cast → Reshape
        [→ Add row offsets, one table per output channel] → Gather(values) → weight

b is 1, 2, 4 or 8 bits, the fewest that hold the codebook's size. Every input is constant, so
onnxruntime folds the subgraph once when it loads the model and runs the layer on the float
weight: the file shrinks, the speed does not change. Needs opset 13."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .qdq import output_axis

OPSET = 13


def index_bits(k: int) -> int:
    """Bits per stored index for a k-value codebook."""
    return next(b for b in (1, 2, 4, 8) if k <= 2 ** b)


def store_codebook(model: onnx.ModelProto, layer, codes: np.ndarray, values: np.ndarray) -> None:
    """Replace the layer's float initializer by its codebook form, in place. `codes`: integer
    indices in the weight's layout; `values`: (output channels, k) ascending, one row per output
    channel (a single table is stored when every row holds the same one)."""
    g = model.graph
    name = layer.weight
    values = np.asarray(values, np.float32)
    shared = bool(np.all(values == values[:1]))
    table = values[:1] if shared else values
    k = table.shape[1]
    b = index_bits(k)
    flat = np.asarray(codes).astype(np.uint8).ravel()
    n = flat.size
    inits = [numpy_helper.from_array(table.ravel(), f"{name}.cb_values"),
             numpy_helper.from_array(np.asarray(codes.shape, np.int64), f"{name}.cb_shape")]
    nodes = []
    idx = f"{name}.cb_index"
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
    nodes += [helper.make_node("Cast", [unpacked], [f"{name}.cb_long"], to=TensorProto.INT64),
              helper.make_node("Reshape", [f"{name}.cb_long", f"{name}.cb_shape"], [idx])]
    if not shared:
        axis = output_axis(layer)
        offsets = (np.arange(len(table), dtype=np.int64) * k).reshape(
            [-1 if d == axis else 1 for d in range(len(codes.shape))])
        inits.append(numpy_helper.from_array(offsets, f"{name}.cb_offsets"))
        nodes.append(helper.make_node("Add", [idx, f"{name}.cb_offsets"], [f"{idx}.row"]))
        idx = f"{idx}.row"
    nodes.append(helper.make_node("Gather", [f"{name}.cb_values", idx], [name], axis=0))
    for node in nodes:
        node.name = node.output[0]
    keep = [t for t in g.initializer if t.name != name]
    del g.initializer[:]
    g.initializer.extend(keep + inits)
    for i, node in enumerate(nodes):
        g.node.insert(i, node)
