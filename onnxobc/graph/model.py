"""Loading ONNX models: clear errors for what is not a model (or not a valid one), external data
only from files inside the model's folder, weights held in Constant nodes or sparse initializers
turned into ordinary initializers, initializers also listed as graph inputs made constants."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..protos import tensors


def load_model(path) -> onnx.ModelProto:
    """The model at `path` with its external data loaded and Constant-node tensors turned into
    initializers (so every weight is found the same way). A ValueError says what is wrong: not
    a model, an opset the installed onnx does not know, external data outside the model's folder
    (or absolute, or through a symbolic link), a model onnx.checker rejects, an initializer whose
    data does not fill its shape."""
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
    known = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > known:
            raise ValueError(f"{path}: the model is at opset {o.version}, newer than the installed onnx knows "
                             f"({known})")
    for t in tensors(model.graph):
        if t.data_location == TensorProto.EXTERNAL:
            _check_external(path, t)
    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # onnx's ValidationError, or a protobuf error for what the checker cannot parse
        raise ValueError(f"{path}: the model fails onnx.checker ({' '.join(str(e).split())[:400]})") from None
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as e:
        raise ValueError(f"{path}: its external data could not be read ({e})") from None
    for t in model.graph.initializer:
        _check_size(path, t)
    constants_to_initializers(model.graph)
    sparse_to_dense(model.graph)
    return model


def external_files(model: onnx.ModelProto) -> list:
    """The external data files a model's tensors name (relative locations, each once)."""
    return sorted({e.value for t in tensors(model.graph) if t.data_location == TensorProto.EXTERNAL
                   for e in t.external_data if e.key == "location"})


def _check_external(path: pathlib.Path, t: TensorProto) -> None:
    """External data must be a regular file inside the model's folder, reached without symbolic
    links: a model must not make this tool read anything else."""
    where = {e.key: e.value for e in t.external_data}.get("location", "")
    rel = pathlib.PurePath(where)
    folder = path.parent.resolve()
    if not where or rel.is_absolute():
        raise ValueError(f"{path}: tensor {t.name!r} keeps its data at {where!r}: an absolute or empty location "
                         "is refused (external data must be a file beside the model)")
    step = folder
    for part in rel.parts:
        step = step / part
        if step.is_symlink():
            raise ValueError(f"{path}: tensor {t.name!r} keeps its data at {where!r}, through the symbolic link "
                             f"{step}: refused")
    if ".." in rel.parts or not (folder / rel).resolve().is_relative_to(folder):
        raise ValueError(f"{path}: tensor {t.name!r} keeps its data at {where!r}, outside the model's folder: refused")
    if not step.is_file():
        raise ValueError(f"{path}: tensor {t.name!r} keeps its data in {where!r}, which is not a file in "
                         f"{folder}")


def element_dtype(elem_type: int, what: str) -> np.dtype:
    """The NumPy dtype of an ONNX element type; a ValueError naming `what` for a type onnx does not know."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError):
        raise ValueError(f"{what} has element type {elem_type}, which onnx does not know") from None


def _check_size(path: pathlib.Path, t: TensorProto) -> None:
    """An initializer must have a known element type, and its raw bytes must fill its shape."""
    dtype = element_dtype(t.data_type, f"{path}: initializer {t.name!r}")
    if not t.HasField("raw_data") or t.data_type == TensorProto.STRING:
        return
    count = int(np.prod(t.dims, dtype=np.int64))
    bits = 4 if t.data_type in (TensorProto.INT4, TensorProto.UINT4) else 8 * dtype.itemsize
    if len(t.raw_data) != (count * bits + 7) // 8:
        raise ValueError(f"{path}: initializer {t.name!r} holds {len(t.raw_data)} bytes, but its shape "
                         f"{tuple(t.dims)} needs {(count * bits + 7) // 8}: the file is damaged")


def inputs_to_constants(model: onnx.ModelProto) -> list:
    """Drop graph inputs that also have an initializer (old models list every weight so; newer
    ones use it for weights a caller may override), so the initializers are the weights; the IR
    version is raised to 4 where it was lower. Returns the names dropped."""
    inits = {t.name for t in model.graph.initializer}
    dropped = [i.name for i in model.graph.input if i.name in inits]
    if dropped:
        keep = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        model.ir_version = max(model.ir_version, 4)
    return dropped


def limit_versions(model: onnx.ModelProto, runtime: str, max_opset: int | None, max_ir: int | None):
    """`model` (changed in place and returned) at an IR version of at most `max_ir`, which every
    opset up to `max_opset` allows; a ValueError when its opset is newer than `runtime` reads."""
    default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    version = max((o.version for o in default), default=0)
    if max_opset is not None and version > max_opset:
        raise ValueError(f"{runtime} reads opsets up to {max_opset}, and this model is at opset {version} (4-bit "
                         "weights are stored at opset 21): use 8-bit weights for it")
    if max_ir is not None:
        model.ir_version = min(model.ir_version, max_ir)
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
