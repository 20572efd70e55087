"""Mutations of ONNX models and calibration files for the fuzz runs (test_fuzz.py, bench/fuzz.py),
and the harness that feeds one mutated case through load, discovery, calibration and capture.

A case ends "accepted" (prepared: layers found, Hessians captured), "refused" (a ValueError, the
errors the CLI prints as one line) or "unclean" (any other exception: a bug to fix and to add to
the corpus).
"""

from __future__ import annotations

import io
import pathlib
import random
import warnings

import numpy as np
import onnx
from corpus import calib, net
from onnx import TensorProto, helper

from onnxobc.options import Options
from onnxobc.prepare import prepare

OPS = ["Conv", "Gemm", "MatMul", "Relu", "Add", "Identity", "Flatten", "Reshape", "GlobalAveragePool", "If",
       "Loop", "DequantizeLinear", "Unknown"]
DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT8,
          TensorProto.BFLOAT16, TensorProto.STRING, TensorProto.BOOL, TensorProto.UNDEFINED, 99]


def _names(m):
    return [t.name for t in m.graph.initializer] + [i.name for i in m.graph.input] + \
        [o for n in m.graph.node for o in n.output] + ["", "missing"]


def _node(rng, m):
    return rng.choice(m.graph.node) if m.graph.node else None


def _op_type(rng, m):
    if (n := _node(rng, m)) is not None:
        n.op_type = rng.choice(OPS)


def _input_name(rng, m):
    if (n := _node(rng, m)) is not None and n.input:
        n.input[rng.randrange(len(n.input))] = rng.choice(_names(m))


def _output_name(rng, m):
    if (n := _node(rng, m)) is not None and n.output:
        n.output[0] = rng.choice(_names(m))


def _drop_node(rng, m):
    if m.graph.node:
        del m.graph.node[rng.randrange(len(m.graph.node))]


def _copy_node(rng, m):
    if (n := _node(rng, m)) is not None:
        m.graph.node.insert(rng.randrange(len(m.graph.node) + 1), n)


def _swap_nodes(rng, m):
    if len(m.graph.node) > 1:
        i, j = rng.sample(range(len(m.graph.node)), 2)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(m.graph.node[i])
        b.CopyFrom(m.graph.node[j])
        m.graph.node[i].CopyFrom(b)
        m.graph.node[j].CopyFrom(a)


def _attribute(rng, m):
    n = _node(rng, m)
    if n is None:
        return
    if n.attribute and rng.random() < 0.3:
        del n.attribute[rng.randrange(len(n.attribute))]
        return
    name = rng.choice(["kernel_shape", "pads", "strides", "group", "transB", "transA", "dilations", "axis"])
    keep = [a for a in n.attribute if a.name != name]
    del n.attribute[:]
    n.attribute.extend(keep)
    value = rng.randint(-2, 9) if name in ("group", "transB", "transA", "axis") else \
        [rng.randint(-1, 9) for _ in range(rng.randint(0, 5))]
    n.attribute.append(helper.make_attribute(name, value, attr_type=onnx.AttributeProto.INT if isinstance(value, int)
                                             else onnx.AttributeProto.INTS))


def _initializer(rng, m):
    if not m.graph.initializer:
        return
    t = rng.choice(m.graph.initializer)
    what = rng.randrange(4)
    if what == 0 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.randint(0, 9)
    elif what == 1:
        t.data_type = rng.choice(DTYPES)
    elif what == 2 and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
    else:
        t.name = rng.choice(_names(m))


def _graph_input(rng, m):
    i = rng.choice(m.graph.input)
    dims = i.type.tensor_type.shape.dim
    what = rng.randrange(3)
    if what == 0:
        i.type.tensor_type.elem_type = rng.choice(DTYPES)
    elif what == 1 and dims:
        d = dims[rng.randrange(len(dims))]
        d.dim_value = rng.randint(0, 9) if rng.random() < 0.7 else 0
        if rng.random() < 0.3:
            d.dim_param = "sym"
    else:
        t = rng.choice(m.graph.initializer) if m.graph.initializer else None
        if t is not None:
            m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))


def _versions(rng, m):
    if rng.random() < 0.5:
        m.opset_import[0].version = rng.randint(1, 30)
    else:
        m.ir_version = rng.randint(1, 12)


def _domain(rng, m):
    if (n := _node(rng, m)) is not None:
        n.domain = rng.choice(["com.example", "com.microsoft", "ai.onnx.ml", ""])


STRUCTURED = [_op_type, _input_name, _output_name, _drop_node, _copy_node, _swap_nodes, _attribute, _initializer,
              _graph_input, _versions, _domain]


def _bytes(rng, raw: bytes) -> bytes:
    """Flip, delete, duplicate or truncate at random places."""
    b = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        i = rng.randrange(len(b))
        what = rng.randrange(4)
        if what == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif what == 1:
            del b[i: i + rng.randint(1, 16)]
        elif what == 2:
            b[i:i] = b[i: i + rng.randint(1, 16)]
        else:
            del b[i:]
    return bytes(b)


def mutated_model(rng: random.Random) -> bytes:
    m = net(seed=rng.randrange(3))
    for _ in range(rng.randint(1, 3)):
        rng.choice(STRUCTURED)(rng, m)
    raw = m.SerializeToString()
    return _bytes(rng, raw) if rng.random() < 0.3 else raw


def mutated_calibration(rng: random.Random) -> bytes:
    """An .npz for the corpus network, with its dtype, shape, values, names or bytes changed."""
    data = calib(n=rng.choice([0, 1, 2, 12]))
    x = data.pop("x")
    what = rng.randrange(6)
    if what == 0:
        x = x.astype(rng.choice([np.float64, np.float16, np.int32, np.uint8, np.bool_, np.complex64, np.str_]))
    elif what == 1:
        shape = list(x.shape)
        if rng.random() < 0.5 and len(shape) > 1:
            shape.pop(rng.randrange(len(shape)))
        else:
            shape.insert(rng.randrange(len(shape) + 1), rng.randint(0, 3))
        x = np.resize(x, shape)
    elif what == 2 and x.size:
        x.flat[rng.randrange(x.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, 1e-45, 0.0])
    elif what == 3:
        x = x * np.float32(rng.choice([0.0, 1e-30, 1e30]))
    key = rng.choice(["x", "x", "x", "y", ""]) if what == 4 else "x"
    buf = io.BytesIO()
    np.savez(buf, **{key or "arr": x}, **({"extra": x} if what == 4 and rng.random() < 0.5 else {}))
    raw = buf.getvalue()
    return _bytes(rng, raw) if what == 5 else raw


def run_case(folder: pathlib.Path, model: bytes, calibration: bytes) -> tuple:
    """(outcome, detail) of preparing `model` with `calibration` for 8-bit weights."""
    (folder / "m.onnx").write_bytes(model)
    (folder / "c.npz").write_bytes(calibration)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = prepare(folder / "m.onnx", str(folder / "c.npz"), Options(wbits=8))
        return "accepted", f"{len(prep.layers)} layers"
    except ValueError as e:
        return "refused", str(e)
    except Exception as e:  # anything else is a bug
        return "unclean", f"{type(e).__name__}: {e}"


def valid_model() -> bytes:
    return net().SerializeToString()


def valid_calibration() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **calib())
    return buf.getvalue()
