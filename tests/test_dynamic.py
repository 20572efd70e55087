"""Dynamic int8 MatMuls (--abits dynamic, graph/dynamic.py): the written form computes exactly the
integer product of the codes with the activations DynamicQuantizeLinear quantizes, onnxruntime
fuses it into its int8 kernels, other layers stay float, and bad combinations are refused."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model
from test_compress import onnxobc

from onnxobc.options import Options
from onnxobc.pipeline import compress
from onnxobc.runtimes.onnxruntime import OnnxRuntime


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.fixture()
def net(tmp_path):
    """MatMul + bias → Relu → MatMul, and a Gemm reading the same input: 3-D activations."""
    rng = np.random.default_rng(0)
    w = lambda name, *s: numpy_helper.from_array((0.3 * rng.standard_normal(s)).astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["y"], name="fc2"),
             helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "wg"], ["z"], name="gemm", transB=1)]
    model = make_model(nodes, [vi("x", ["n", 5, 16])], [vi("y", ["n", 5, 8]), vi("z", ["n", 4])],
                       [w("w1", 16, 32), w("b1", 32), w("w2", 32, 8), w("wg", 4, 80)])
    path = tmp_path / "net.onnx"
    onnx.save(model, path)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((40, 5, 16)).astype(np.float32))
    return path, tmp_path / "c.npz"


def run(path, feed, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)


def dynamic_quantize(x):
    """DynamicQuantizeLinear as the ONNX spec defines it: uint8 over [min(x, 0), max(x, 0)]."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32((hi - lo) / 255)
    zero = np.clip(np.rint(-lo / scale), 0, 255)
    return np.clip(np.rint(x / scale) + zero, 0, 255), scale, zero


def test_dynamic_form_is_the_integer_product(net, tmp_path):
    path, calib = net
    out = tmp_path / "d.onnx"
    rep = compress(path, out, calib,  # the product alone
                   Options(wbits=7, abits="dynamic", smooth="off", slow_int8="keep"))
    m = onnx.load(out)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["MatMulInteger"] == 2 and ops["DynamicQuantizeLinear"] == 2 and ops["Gemm"] == 1
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    assert init["w1.q"].dtype == np.int8 and not init["w1.zero"].any()
    x = np.random.default_rng(5).standard_normal((3, 5, 16)).astype(np.float32)
    y, z = run(out, {"x": x}, optimize=False)
    xq, xs, xz = dynamic_quantize(x)
    h = (xq - xz) @ init["w1.q"].astype(np.float64) * (xs * init["w1.scale"]) + init["b1"]
    hq, hs, hz = dynamic_quantize(np.maximum(h, 0).astype(np.float32))
    expect = (hq - hz) @ init["w2.q"].astype(np.float64) * (hs * init["w2.scale"]) + init["w2.shift0"]  # bias correction
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run(out, {"x": x})[0], y, rtol=1e-4, atol=1e-4)  # the fused kernels, 7-bit codes
    notes = {r["weight"]: r["note"] for r in rep["layers"]}
    assert "no dynamic int8 form" in notes["wg"] and "float" in notes["wg"]
    assert {r["weight"]: r["storage"] for r in rep["layers"]}["w1"] == "int7, dynamic int8 activations"


def test_onnxruntime_fuses_the_dynamic_form(net, tmp_path):
    path, calib = net
    out = tmp_path / "d.onnx"
    compress(path, out, calib, Options(wbits=8, abits="dynamic", slow_int8="keep"))
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} and "MatMulInteger" not in ops


@pytest.mark.parametrize("args,message", [
    (["--wbits", "8", "--abits", "4"], "supports 8 (static int8 activations) or dynamic"),
    (["--wbits", "8", "--abits", "fast"], "--abits takes 8 or dynamic"),
    (["--wbits", "4", "--abits", "dynamic"], "need int8 weights"),
    (["--wbits", "8", "--abits", "dynamic", "--asym"], "drop --asym"),
    (["--wbits", "8", "--abits", "dynamic", "--runtime", "tensorrt"], "--abits dynamic is onnxruntime's form"),
])
def test_bad_dynamic_options(net, tmp_path, args, message):
    path, calib = net
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), *args)
    assert r.returncode == 2 and message in r.stderr and not (tmp_path / "o.onnx").exists(), r.stderr


def test_dynamic_level_names_round_trip():
    from onnxobc.db.levels import Level, parse

    assert parse("w8a8dyn") == Level(wbits=8, abits="dynamic") and parse("w7a8dyn").name == "w7a8dyn"
    assert parse("w8a8").abits == 8


@pytest.mark.parametrize("wbits", [7, 8])
def test_weights_wider_than_the_int8_kernels_take_are_noted(net, tmp_path, monkeypatch, wbits):
    """As on a CPU without VNNI, where onnxruntime's int8 kernels saturate 8-bit weights."""
    monkeypatch.setattr(OnnxRuntime, "int8_weight_bits", lambda self: 7)
    path, calib = net
    rep = compress(path, tmp_path / "d.onnx", calib, Options(wbits=wbits, abits="dynamic", slow_int8="keep"))
    noted = [n for n in rep["notes"] if "saturate above 7-bit weights" in n]
    assert len(noted) == (wbits == 8), rep["notes"]
