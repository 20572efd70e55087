"""Writing models: compressed weights back into initializers, atomic saves."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import numpy_helper

from ..atomic import atomic_path
from ..protos import copy, is_large, save
from .nodes import subgraphs


def set_weights(model: onnx.ModelProto, weights: dict) -> onnx.ModelProto:
    """A copy of `model` with the initializers named in `weights` replaced (same name, dtype, shape)."""
    out = copy(model)
    for t in out.graph.initializer:
        if t.name in weights:
            new = numpy_helper.from_array(weights[t.name].astype(numpy_helper.to_array(t).dtype), t.name)
            if tuple(new.dims) != tuple(t.dims):
                raise ValueError(f"weight {t.name!r}: shape {tuple(new.dims)} does not match {tuple(t.dims)}")
            t.CopyFrom(new)
    return out


def sparse_where_smaller(model: onnx.ModelProto, names) -> list:
    """Store each named float initializer as a sparse initializer (its nonzero values and their
    int64 flat indices) where that takes fewer bytes than the dense tensor, in place; returns the
    names stored so. onnxruntime densifies them when it loads the model."""
    if model.ir_version < 6:  # sparse initializers arrived with IR version 6
        return []
    moved = []
    for i, t in enumerate(model.graph.initializer):
        if t.name not in names or t.data_type != onnx.TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(t)
        idx = np.flatnonzero(w)
        if 12 * len(idx) >= 4 * w.size:  # 4-byte value + 8-byte index per nonzero against 4 bytes per entry
            continue
        values = numpy_helper.from_array(w.ravel()[idx], t.name)
        model.graph.sparse_initializer.append(
            onnx.helper.make_sparse_tensor(values, numpy_helper.from_array(idx.astype(np.int64), f"{t.name}.indices"),
                                           list(w.shape)))
        moved.append(i)
    names = [model.graph.initializer[i].name for i in moved]
    for i in reversed(moved):
        del model.graph.initializer[i]  # in place: rebuilding the list would copy every weight of the model
    return names


def drop_unused_initializers(model: onnx.ModelProto, among=None) -> None:
    """Remove top-level initializers (of those named in `among`, by default all) that no node,
    subgraph or graph output reads, in place."""
    used = {o.name for o in model.graph.output}
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            used.update(n.input)
            stack.extend(subgraphs(n))
    dropped = {t.name for t in model.graph.initializer if among is None or t.name in among} - used
    for field in (model.graph.initializer, model.graph.input):  # old models list initializers as inputs too
        for i in reversed([i for i, t in enumerate(field) if t.name in dropped]):
            del field[i]  # in place: rebuilding the list would copy every weight of the model


def save_atomic(model: onnx.ModelProto, path) -> None:
    """Save through atomic_path: a crash or a full disk leaves no partial output. A model past
    protobuf's limit goes with its tensors in `path`.data beside it (renamed into place first)."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        if not is_large(model):
            onnx.save(model, tmp)
            return
        data = path.with_name(path.name + ".data")
        with atomic_path(data) as tmp_data:
            save(model, tmp, tmp_data, data.name)
