"""Models past protobuf's 2 GiB limit on one message: written as a model file and one file of
tensor data beside it (ONNX external data). The tensors are moved out and put back in place, so
the weights are never copied in memory."""

from __future__ import annotations

import contextlib
import pathlib
import tempfile

import onnx
from onnx import TensorProto

LARGE = 1_800_000_000  # bytes: a model above this is written with external data (the limit is 2 GiB)
ALIGN = 4096  # tensor data offsets, as onnx's own writer aligns them for memory mapping


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of `model` (protobuf's CopyFrom)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def is_large(model: onnx.ModelProto) -> bool:
    """Past LARGE bytes, summed part by part (protobuf cannot size a message past its limit whole)."""
    g = model.graph
    return sum(p.ByteSize() for field in (g.initializer, g.sparse_initializer, g.node) for p in field) > LARGE


def save(model: onnx.ModelProto, path, data_path=None, location: str | None = None) -> None:
    """Write `model` to `path`: whole where it is small, else with every tensor of 1 KiB or more
    in `data_path` (default: `path`.data), which the model names as `location` (default: that
    file's name; it must be the name the data file will have beside the model)."""
    path = pathlib.Path(path)
    if not is_large(model):
        onnx.save(model, str(path))
        return
    data_path = pathlib.Path(data_path) if data_path else path.with_name(path.name + ".data")
    location = location or data_path.name
    moved = []
    try:
        with open(data_path, "wb") as f:
            for t in tensors(model.graph):
                if t.data_location == TensorProto.EXTERNAL or not t.HasField("raw_data") or len(t.raw_data) < 1024:
                    continue
                offset = -(-f.tell() // ALIGN) * ALIGN
                f.seek(offset)
                f.write(t.raw_data)
                moved.append((t, t.raw_data))
                t.ClearField("raw_data")
                t.data_location = TensorProto.EXTERNAL
                for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(moved[-1][1])))):
                    t.external_data.add(key=k, value=v)
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    finally:
        for t, raw in moved:
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
            t.raw_data = raw


@contextlib.contextmanager
def on_disk(model):
    """A path to `model` (a path already, or a ModelProto written to a temporary folder, with
    external data where it is large), valid inside the block."""
    if isinstance(model, (str, pathlib.Path)):
        yield str(model)
        return
    with tempfile.TemporaryDirectory(prefix="onnxobc-") as folder:
        path = pathlib.Path(folder) / "model.onnx"
        save(model, path)
        yield str(path)


def check(model) -> None:
    """onnx.checker on a ModelProto or a path, large models through a file."""
    if isinstance(model, onnx.ModelProto) and not is_large(model):
        onnx.checker.check_model(model)
        return
    with on_disk(model) as path:
        onnx.checker.check_model(path)


def tensors(graph: onnx.GraphProto):
    """Every tensor stored in the graph and its subgraphs: initializers, sparse ones, attributes."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from tensors(a.g)
            for g in a.graphs:
                yield from tensors(g)
