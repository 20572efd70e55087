"""Models with onnxruntime-extensions custom ops (an in-graph string op before the layers):
calibrated and compressed when the user names the library, a clear error when they do not."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_compress import onnxobc

WORDS = np.array(["a", "to", "the", "model", "onnx", "", "compress", "hessian", "obs", "int8"])


def text_model(path):
    """text (n, 6) strings → StringLength (ai.onnx.contrib) → Cast → MatMul → Relu → MatMul."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("StringLength", ["text"], ["len"], domain="ai.onnx.contrib"),
             helper.make_node("Cast", ["len"], ["lenf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["lenf", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")]
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             [("W1", (6, 16)), ("W2", (16, 3))]]
    graph = helper.make_graph(nodes, "text", [helper.make_tensor_value_info("text", TensorProto.STRING, ["n", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.contrib", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture()
def text(tmp_path):
    text_model(tmp_path / "text.onnx")
    np.savez(tmp_path / "calib.npz", text=np.random.default_rng(1).choice(WORDS, (32, 6)))
    return tmp_path / "text.onnx", tmp_path / "calib.npz"


def test_compresses_with_the_named_library(text, tmp_path):
    pytest.importorskip("onnxruntime_extensions")
    path, calib = text
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), "--wbits", "4",
                "--custom-ops", "extensions")
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and "W1" in r.stdout and "W2" in r.stdout
    out = onnx.load(tmp_path / "o.onnx")
    assert "StringLength" in [n.op_type for n in out.graph.node]


def test_without_the_library_the_error_says_which(text, tmp_path):
    path, calib = text
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), "--wbits", "4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ai.onnx.contrib" in r.stderr and "--custom-ops" in r.stderr
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), "--wbits", "4",
                "--custom-ops", str(tmp_path / "missing.so"))
    assert r.returncode == 2 and "neither 'extensions' nor a custom-op library file" in r.stderr
    np.savez(tmp_path / "numbers.npz", text=np.zeros((4, 6), np.float32))
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(tmp_path / "numbers.npz"),
                "--wbits", "4")
    assert r.returncode == 2 and "the model takes strings" in r.stderr
    assert not (tmp_path / "o.onnx").exists()
