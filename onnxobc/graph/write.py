"""Writing models: compressed weights back into initializers, atomic saves."""

from __future__ import annotations

import os
import pathlib
import tempfile

import onnx
from onnx import numpy_helper


def set_weights(model: onnx.ModelProto, weights: dict) -> onnx.ModelProto:
    """A copy of `model` with the initializers named in `weights` replaced (same name, dtype, shape)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in weights:
            new = numpy_helper.from_array(weights[t.name].astype(numpy_helper.to_array(t).dtype), t.name)
            if tuple(new.dims) != tuple(t.dims):
                raise ValueError(f"weight {t.name!r}: shape {tuple(new.dims)} does not match {tuple(t.dims)}")
            t.CopyFrom(new)
    return out


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove top-level initializers that no node, subgraph or graph output reads, in place."""
    used = {o.name for o in model.graph.output}
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            used.update(n.input)
            for a in n.attribute:
                stack.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs)
    dropped = {t.name for t in model.graph.initializer} - used
    for field in (model.graph.initializer, model.graph.input):  # old models list initializers as inputs too
        keep = [t for t in field if t.name not in dropped]
        del field[:]
        field.extend(keep)


def save_atomic(model: onnx.ModelProto, path) -> None:
    """Write to a temporary file beside `path`, then rename: a crash or a full disk leaves no
    partial output. Models over protobuf's 2 GB limit go to external data beside the file."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files; the output is an ordinary one
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
