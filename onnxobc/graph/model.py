"""Loading ONNX models: clear errors for what is not a model, external data from the model's
folder, weights held in Constant nodes or sparse initializers turned into ordinary initializers."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import numpy_helper


def load_model(path) -> onnx.ModelProto:
    """The model at `path` with its external data loaded and Constant-node tensors turned into
    initializers (so every weight is found the same way). A ValueError says what is wrong."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have several types
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.graph.node:
        raise ValueError(f"{path}: not an ONNX model with a graph (no nodes found)")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: its external data could not be read ({e})") from None
    constants_to_initializers(model.graph)
    sparse_to_dense(model.graph)
    return model


def sparse_to_dense(graph: onnx.GraphProto) -> int:
    """Turn the graph's sparse initializers into ordinary dense ones; returns how many."""
    for sp in graph.sparse_initializer:
        values = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices).astype(np.int64)
        dense = np.zeros(int(np.prod(sp.dims)), dtype=values.dtype)
        dense[idx if idx.ndim == 1 else np.ravel_multi_index(idx.T, tuple(sp.dims))] = values
        graph.initializer.append(numpy_helper.from_array(dense.reshape(tuple(sp.dims)), sp.values.name))
    count = len(graph.sparse_initializer)
    del graph.sparse_initializer[:]
    return count


def constants_to_initializers(graph: onnx.GraphProto) -> int:
    """Replace top-level Constant nodes that hold a tensor (`value`) by initializers of the same
    name; returns how many were moved. Subgraphs are left alone."""
    keep, moved = [], 0
    for node in graph.node:
        value = [a for a in node.attribute if a.name == "value"] if node.op_type == "Constant" else []
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved
