"""A corpus of bad and odd inputs, each with its expected outcome (test_corpus.py runs them).

A case writes its files into a folder and returns the `onnxobc` arguments. Its outcome is "ok"
(the command succeeds and its output says `says`, e.g. what it skipped) or "error" (exit status
2 and an error naming the problem). Either way: no traceback, no partial output, the inputs
untouched.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SAMPLES = 12


@dataclasses.dataclass
class Case:
    name: str
    make: Callable[[pathlib.Path], list]  # folder → the CLI arguments
    outcome: str  # "ok" or "error"
    says: str  # in stdout ("ok") or stderr ("error")
    needs: str | None = None  # an importable module the case needs, skipped without it


def _ir_for(opset: int) -> int:
    return max(3, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def net(opset: int = 17, dtype=TensorProto.FLOAT, batch="n", spatial=(8, 8), seed: int = 0) -> onnx.ModelProto:
    """x (batch, 3, 8, 8) → Conv 3→8 → Relu → Conv 8→8 → Relu → GlobalAveragePool → Flatten → Gemm 8→4."""
    rng = np.random.default_rng(seed)
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)

    def init(name, *shape):
        a = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        if dtype == TensorProto.BFLOAT16:
            return helper.make_tensor(name, dtype, shape, a.ravel().tolist())
        return numpy_helper.from_array(a.astype(np_dtype), name)

    inits = [init("c1.w", 8, 3, 3, 3), init("c1.b", 8), init("c2.w", 8, 8, 3, 3), init("c2.b", 8),
             init("fc.w", 4, 8), init("fc.b", 4)]
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["a1"], name="c1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["a1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["a2"], name="c2", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["a2"], ["r2"], name="r2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1)]
    x = helper.make_tensor_value_info("x", dtype, [batch, 3, *spatial])
    y = helper.make_tensor_value_info("y", dtype, [batch, 4])
    ir = _ir_for(min(opset, onnx.defs.onnx_opset_version()))
    listed = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits] if ir < 4 else []
    graph = helper.make_graph(nodes, "net", [x, *listed], [y], inits)  # IR 3 lists every initializer as an input
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def calib(n: int = SAMPLES, dtype=np.float32, seed: int = 1, **inputs) -> dict:
    rng = np.random.default_rng(seed)
    return inputs or {"x": rng.standard_normal((n, 3, 8, 8)).astype(dtype)}


def _write(folder, model=None, data=None, model_name="m.onnx"):
    """Save the model (a ModelProto or raw bytes) and the calibration; the default arguments."""
    path = folder / model_name
    if isinstance(model, bytes):
        path.write_bytes(model)
    else:
        onnx.save(net() if model is None else model, path)
    np.savez(folder / "c.npz", **(calib() if data is None else data))
    return ["compress", str(path), str(folder / "out.onnx"), "--calib", str(folder / "c.npz"), "--wbits", "8"]


def _model_case(model_fn):
    return lambda d: _write(d, model_fn())


def _bytes(data: bytes):
    return lambda d: _write(d, data)


def _truncated(d):
    raw = net().SerializeToString()
    return _write(d, raw[: len(raw) * 3 // 5])


def _no_layers():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _symbolic():
    return net(batch="batch", spatial=("h", "w"))


def _fp(dtype):
    def make(d):
        return _write(d, net(dtype=dtype), calib(dtype=helper.tensor_dtype_to_np_dtype(dtype)))
    return make


def _insert(model, pos, nodes, inits=()):
    for i, n in enumerate(nodes):
        model.graph.node.insert(pos + i, n)
    model.graph.initializer.extend(inits)
    return model


def _qdq_layer():
    """c1's weight already quantized (int8 codes through DequantizeLinear)."""
    m = net()
    w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "c1.w"))
    scale = np.abs(w).max() / 127
    keep = [t for t in m.graph.initializer if t.name != "c1.w"]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return _insert(m, 0, [helper.make_node("DequantizeLinear", ["c1.q", "c1.s", "c1.z"], ["c1.w"], name="dq")],
                   [numpy_helper.from_array(np.round(w / scale).astype(np.int8), "c1.q"),
                    numpy_helper.from_array(np.float32(scale), "c1.s"), numpy_helper.from_array(np.int8(0), "c1.z")])


def _qlinear_layer():
    """A QLinearConv before the float network (quantize → QLinearConv → dequantize)."""
    m = net()
    m.graph.node[0].input[0] = "xd"
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.float32(0.05), "xs"), numpy_helper.from_array(np.uint8(128), "xz"),
             numpy_helper.from_array(rng.integers(-20, 20, (3, 3, 1, 1)).astype(np.int8), "qw"),
             numpy_helper.from_array(np.float32(0.01), "ws"), numpy_helper.from_array(np.int8(0), "wz")]
    return _insert(m, 0, [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q"),
                          helper.make_node("QLinearConv", ["xq", "xs", "xz", "qw", "ws", "wz", "xs", "xz"], ["yq"],
                                           name="qconv"),
                          helper.make_node("DequantizeLinear", ["yq", "xs", "xz"], ["xd"], name="dq")], inits)


def _matmulnbits_layer():
    """An onnxruntime MatMulNBits (4-bit) layer before the float network's Gemm."""
    m = net()
    m.graph.node[-1].input[0] = "f2"
    rng = np.random.default_rng(4)
    packed = rng.integers(0, 256, (8, 1, 16)).astype(np.uint8)  # N=8 rows, K=8 padded to a 32-block
    m.graph.initializer.extend([numpy_helper.from_array(packed, "nb.w"),
                                numpy_helper.from_array(np.full(8, 0.01, np.float32), "nb.s")])
    m.graph.node.insert(len(m.graph.node) - 1, helper.make_node("MatMulNBits", ["f", "nb.w", "nb.s"], ["f2"],
                                                                name="nbits", domain="com.microsoft", K=8, N=8,
                                                                bits=4, block_size=32))
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


def _weights_listed_as_inputs():
    """An old-style model listing its initializers as graph inputs too (overridable defaults)."""
    m = net()
    for t in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def _weight_fed_at_run_time(d):
    """fc's weight is a graph input without a value: it cannot be compressed, and must be fed."""
    m = net()
    keep = [t for t in m.graph.initializer if t.name != "fc.w"]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    m.graph.input.append(helper.make_tensor_value_info("fc.w", TensorProto.FLOAT, [4, 8]))
    rng = np.random.default_rng(2)
    data = dict(calib(), **{"fc.w": rng.standard_normal((SAMPLES, 4, 8)).astype(np.float32)})
    return _write(d, m, data)


def _shared_weight():
    """One Gemm weight used by two nodes (both read the pooled features)."""
    m = net()
    m.graph.node.append(helper.make_node("Gemm", ["f", "fc.w"], ["y2"], name="fc2", transB=1))
    m.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["n", 4]))
    return m


def _branch(name, w):
    """A subgraph computing Conv(x, w) (x from the outer scope)."""
    y = helper.make_tensor_value_info(f"{name}.y", TensorProto.FLOAT, None)
    return helper.make_graph([helper.make_node("Conv", ["r2", w], [f"{name}.y"], name=f"{name}.conv",
                                               kernel_shape=[1, 1])], name, [], [y])


def _if_subgraph():
    """After c2, an If whose branches each hold a Conv (its condition: a constant)."""
    m = net()
    rng = np.random.default_rng(5)
    m.graph.initializer.extend([numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), n)
                                for n in ("then.w", "else.w")] + [numpy_helper.from_array(np.array(True), "cond")])
    m.graph.node[4].input[0] = "r3"
    m.graph.node.insert(4, helper.make_node("If", ["cond"], ["r3"], name="if", then_branch=_branch("then", "then.w"),
                                            else_branch=_branch("else", "else.w")))
    return m


def _loop_subgraph():
    """A Loop running a 1×1 Conv twice on c2's output."""
    m = net()
    rng = np.random.default_rng(6)
    m.graph.initializer.extend([numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32) / 3,
                                                        "loop.w"),
                                numpy_helper.from_array(np.int64(2), "trips"),
                                numpy_helper.from_array(np.array(True), "go")])
    body = helper.make_graph(
        [helper.make_node("Conv", ["v", "loop.w"], ["v2"], name="loop.conv", kernel_shape=[1, 1]),
         helper.make_node("Identity", ["c"], ["c2"], name="loop.cond")], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v2", TensorProto.FLOAT, None)])
    m.graph.node[4].input[0] = "r3"
    m.graph.node.insert(4, helper.make_node("Loop", ["trips", "go", "r2"], ["r3"], name="loop", body=body))
    return m


def _silero(name):
    def make(d):
        src = pathlib.Path(importlib.util.find_spec("silero_vad").origin).parent / "data" / name  # importing needs torch
        rng = np.random.default_rng(7)
        n = 6  # whole feeds, one at a time: 512 audio samples at 16 kHz, the state, the rate
        data = {"input": rng.standard_normal((n, 1, 512)).astype(np.float32) * 0.1,
                "state": np.zeros((n, 2, 1, 128), np.float32), "sr": np.full(n, 16000, np.int64)}
        return _write(d, src.read_bytes(), data)
    return make


def _custom_domain():
    """A node of an unknown domain between the Convs (no library named)."""
    m = net()
    m.graph.node[1].op_type, m.graph.node[1].domain = "FancyRelu", "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def _external(location=lambda d: "weights.bin", place="model/weights.bin", symlink=False):
    """c2's weight in an external file at `place` (relative to the case's folder; a symbolic link
    to a file outside when `symlink`); the model in model/ says it is at `location`."""
    def make(d):
        m = net()
        t = next(t for t in m.graph.initializer if t.name == "c2.w")
        raw = numpy_helper.to_array(t).tobytes()
        (d / "model").mkdir()
        if place and symlink:
            (d / "real.bin").write_bytes(raw)
            os.symlink(d / "real.bin", d / place)
        elif place:
            (d / place).write_bytes(raw)
        t.ClearField("float_data")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.extend([onnx.StringStringEntryProto(key="location", value=str(location(d))),
                                onnx.StringStringEntryProto(key="length", value=str(len(raw)))])
        return _write(d, m, model_name="model/m.onnx")
    return make


def _calib_case(data_fn, n=SAMPLES):
    return lambda d: _write(d, net(), data_fn(np.random.default_rng(8), n))


def _pickled(d):
    args = _write(d)
    np.savez(d / "c.npz", x=np.array([{"evil": 1}] * SAMPLES, dtype=object))
    return args


def _dead_inputs(rng, n):
    x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    x[:, 1:] = 0  # two of three channels always zero: c1's Hessian is singular
    return {"x": x}


def _big_layer():
    """The network with a wide first Gemm (4096 inputs: a 128 MiB Hessian) on a flattened input."""
    m = net()
    rng = np.random.default_rng(9)
    m.graph.initializer.append(numpy_helper.from_array(rng.standard_normal((4096, 192)).astype(np.float32) / 64,
                                                       "wide.w"))
    shape = numpy_helper.from_array(np.array([-1, 3, 8, 8], np.int64), "shape")
    m.graph.initializer.append(shape)
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4096]))
    m.graph.node[0].input[0] = "xr"
    m.graph.node.insert(0, helper.make_node("MatMul", ["x", "wide.w"], ["xw"], name="wide"))
    m.graph.node.insert(1, helper.make_node("Reshape", ["xw", "shape"], ["xr"], name="reshape"))
    return m


def _big(d):
    rng = np.random.default_rng(10)
    return _write(d, _big_layer(), {"x": rng.standard_normal((SAMPLES, 4096)).astype(np.float32)}) \
        + ["--max-memory", "0.05"]


def _on_cuda(d):
    return _write(d) + ["--device", "cuda"]


def _gpu_usable() -> bool:
    from onnxobc.solver.backend import usable_cupy

    return usable_cupy() is not None


def _checker_fails():
    m = net()
    m.graph.node[2].input[0] = "nowhere"
    return m


def _bad_raw_data():
    m = net()
    t = next(t for t in m.graph.initializer if t.name == "c2.w")
    t.raw_data = t.raw_data[:-8]
    return m


def _unknown_input_type():  # found by the fuzz run
    m = net()
    m.graph.input[0].type.tensor_type.elem_type = 99
    return m


def _unknown_initializer_type():  # found by the fuzz run
    m = net()
    m.graph.initializer[1].data_type = 99
    return m


def _fails_at_run_time():  # found by the fuzz run: valid to onnx.checker, onnxruntime fails running it
    m = net()
    m.graph.node[2].attribute.append(helper.make_attribute("group", 2))
    return m


def _same_path(d):
    args = _write(d)
    args[2] = args[1]
    return args


def _out_elsewhere(where):
    def make(d):
        args = _write(d)
        args[2] = str(where(d))
        return args
    return make


def _report_is_output(d):
    return _write(d) + ["--report", str(d / "out.onnx")]


def _out_is_folder(d):
    (d / "out.onnx").mkdir()
    return _write(d)


CASES = [
    Case("not_onnx", _bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4), "error", "not a readable ONNX model"),
    Case("truncated", _truncated, "error", "m.onnx"),
    Case("empty", _bytes(b""), "error", "the file is empty"),
    Case("text", _bytes(b'{"graph": "not protobuf"}\n'), "error", "m.onnx"),
    *[Case(f"opset_{v}", _model_case(lambda v=v: net(opset=v)), "ok", "verified") for v in (7, 9, 11, 13, 17, 21)],
    Case("opset_future", _model_case(lambda: net(opset=99)), "error", "opset 99"),
    Case("no_layer", _model_case(_no_layers), "error", "no compressible layer"),
    Case("symbolic_shapes", _model_case(_symbolic), "ok", "verified"),
    Case("fp16", _fp(TensorProto.FLOAT16), "error", "float16"),
    Case("bf16", _fp(TensorProto.BFLOAT16), "error", "bfloat16"),
    Case("qdq_layer", _model_case(_qdq_layer), "ok", "left as is: c1"),
    Case("qlinear_layer", _model_case(_qlinear_layer), "ok", "verified"),
    Case("matmulnbits_layer", _model_case(_matmulnbits_layer), "ok", "verified"),
    Case("weights_listed_as_inputs", _model_case(_weights_listed_as_inputs), "ok", "verified"),
    Case("weight_fed_at_run_time", _weight_fed_at_run_time, "ok", "left as is: fc"),
    Case("shared_weight", _model_case(_shared_weight), "ok", "verified"),
    Case("if_subgraph", _model_case(_if_subgraph), "ok", "left as is: then.conv"),
    Case("loop_subgraph", _model_case(_loop_subgraph), "ok", "left as is: loop.conv"),
    Case("silero_vad_if_only", _silero("silero_vad.onnx"), "error", "inside the subgraph of If", needs="silero_vad"),
    Case("silero_vad_top_level_convs", _silero("silero_vad_16k_op15.onnx"), "ok", "verified", needs="silero_vad"),
    Case("custom_domain_unnamed", _model_case(_custom_domain), "error", "--custom-ops"),
    Case("external_data", _external(), "ok", "verified"),
    Case("external_escapes", _external(lambda d: "../weights.bin", "weights.bin"), "error", "outside the model's folder"),
    Case("external_absolute", _external(lambda d: d / "weights.bin", "weights.bin"), "error", "absolute"),
    Case("external_symlink", _external(symlink=True), "error", "symbolic link"),
    Case("external_missing", _external(lambda d: "gone.bin", None), "error", "gone.bin"),
    Case("calib_wrong_name", _calib_case(lambda r, n: {"image": r.standard_normal((n, 3, 8, 8)).astype(np.float32)}),
         "error", "calibration inputs do not match"),
    Case("calib_wrong_shape", _calib_case(lambda r, n: {"x": r.standard_normal((n, 3, 9, 8)).astype(np.float32)}),
         "error", "has shape"),
    Case("calib_wrong_dtype", _calib_case(lambda r, n: {"x": r.standard_normal((n, 3, 8, 8))}), "error", "float64"),
    Case("calib_one_sample", _calib_case(lambda r, n: {"x": r.standard_normal((1, 3, 8, 8)).astype(np.float32)}),
         "ok", "on 1 calibration sample (too few to hold any out)"),
    Case("calib_zeros", _calib_case(lambda r, n: {"x": np.zeros((n, 3, 8, 8), np.float32)}), "ok",
         "inputs are all zero on the calibration data"),
    Case("calib_nan", _calib_case(lambda r, n: {"x": np.full((n, 3, 8, 8), np.nan, np.float32)}), "error", "NaN"),
    Case("calib_inf", _calib_case(lambda r, n: {"x": np.full((n, 3, 8, 8), np.inf, np.float32)}), "error", "Inf"),
    Case("calib_no_samples", _calib_case(lambda r, n: {"x": np.zeros((0, 3, 8, 8), np.float32)}), "error",
         "no samples"),
    Case("calib_pickled", _pickled, "error", "pickled"),
    Case("calib_singular_hessian", _calib_case(_dead_inputs), "ok", "verified"),
    Case("calib_tiny_hessian", _calib_case(lambda r, n: {"x": r.standard_normal((n, 3, 8, 8)).astype(np.float32)
                                                         * np.float32(1e-30)}), "ok", "verified"),
    Case("layer_over_memory_budget", _big, "ok", "left as is: wide"),
    # --device cuda succeeds where CuPy has a GPU and is refused before any work elsewhere
    Case("device_cuda", _on_cuda, *(("ok", "verified") if _gpu_usable() else ("error", "needs CuPy"))),
    Case("model_fails_checker", _model_case(_checker_fails), "error", "onnx.checker"),
    Case("initializer_wrong_size", _model_case(_bad_raw_data), "error", "c2.w"),
    Case("input_unknown_element_type", _model_case(_unknown_input_type), "error", "element type 99"),
    Case("initializer_unknown_element_type", _model_case(_unknown_initializer_type), "error", "element type 99"),
    Case("fails_at_run_time", _model_case(_fails_at_run_time), "error", "onnxruntime failed running the model"),
    Case("output_is_input", _same_path, "error", "the output path is the input path"),
    Case("output_folder_missing", _out_elsewhere(lambda d: d / "nowhere" / "o.onnx"), "error", "does not exist"),
    Case("output_is_a_folder", _out_is_folder, "error", "is a folder"),
    Case("report_is_the_output", _report_is_output, "error", "--report must be a file of its own"),
]
