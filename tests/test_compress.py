import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx_models import effective_weights
from test_capture import small_net

from onnxobc.pipeline import Options, compress


def onnxobc(*args):
    return subprocess.run([sys.executable, "-m", "onnxobc", *args], capture_output=True, text=True)


@pytest.fixture()
def net(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(small_net(), path)
    x = np.random.default_rng(0).standard_normal((24, 8, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    return path, tmp_path / "calib.npz"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("opts,baseline", [
    (dict(nm=(2, 4)), dict(nm=(2, 4), method="magnitude")),
    (dict(sparsity=0.5), dict(sparsity=0.5, method="magnitude")),
    (dict(wbits=3), dict(wbits=3, method="rtn")),
    (dict(nm=(2, 4), wbits=4), dict(nm=(2, 4), wbits=4, method="rtn")),
    (dict(block4=0.5), dict(block4=0.5, method="magnitude")),
    (dict(block4=0.5, wbits=8), dict(block4=0.5, wbits=8, method="rtn")),
])
def test_exact_beats_baseline_end_to_end(net, tmp_path, opts, baseline):
    path, calib = net
    before = digest(path)
    exact = compress(path, tmp_path / "exact.onnx", calib, Options(**opts))
    base = compress(path, tmp_path / "base.onnx", calib, Options(**baseline))
    assert digest(path) == before, "the input is never modified"
    out = onnx.load(tmp_path / "exact.onnx")
    onnx.checker.check_model(out)
    x = np.load(calib)["x"][:2]
    weights = effective_weights(out, ["Wc", "Wg", "Wm"], {"x": x})
    if "nm" in opts:
        W = weights["Wg"]  # Gemm transB=1: (out, in), groups of 4 along the input axis
        assert np.all((W.reshape(12, -1, 4) != 0).sum(axis=2) <= 2)
        Wc = np.moveaxis(weights["Wc"], 1, -1)  # conv groups of 4 run along input channels
        assert np.all((Wc != 0).sum(axis=-1) <= 2)
    if "block4" in opts:
        for W in (weights["Wg"].reshape(12, -1, 4), np.moveaxis(weights["Wc"], 1, -1).reshape(8, -1, 4)):
            nonzero = (W != 0).sum(axis=-1)
            assert 0.4 < np.mean(nonzero == 0) < 0.6
            assert "wbits" in opts or set(np.unique(nonzero)) <= {0, 4}  # a quantized survivor may round to 0
    if "wbits" in opts:
        dq = {n.output[0]: n for n in out.graph.node if n.op_type == "DequantizeLinear"}
        assert set(dq) == {"Wc", "Wg", "Wm", "Wm.dq1"}  # one DequantizeLinear per user of the shared Wm
        q = next(t for t in out.graph.initializer if t.name == "Wm.q")
        assert q.data_type == (onnx.TensorProto.INT4 if opts["wbits"] <= 4 else onnx.TensorProto.INT8)
        assert max(o.version for o in out.opset_import if o.domain in ("", "ai.onnx")) >= 13
    for le, lb in zip(exact["layers"], base["layers"]):
        assert le["weight"] == lb["weight"] and le["layer_loss"] <= lb["layer_loss"] * (1 + 1e-6), le["weight"]
    e = sum(exact["verification"]["relative_output_error"].values())
    b = sum(base["verification"]["relative_output_error"].values())
    assert e > 0
    if "wbits" not in opts:
        # end to end only where the gap is structural: layer-wise wins need not add up on a
        # small random network (3-bit OBQ came out 0.44 vs RTN 0.42 here)
        assert e < b


def test_cli_summary_report_and_errors(net, tmp_path):
    path, calib = net
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), "--nm", "2:8",
                "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert "verified: onnx.checker passed" in r.stdout and "Wc" in r.stdout
    assert "4 input channels are not divisible by 8: no N:M" in r.stdout  # the conv stays dense
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "o.onnx").stat().st_mode & 0o777 == 0o666 & ~umask
    report = json.loads((tmp_path / "r.json").read_text())
    assert {l["weight"] for l in report["layers"]} == {"Wc", "Wg", "Wm"}
    before = digest(path)
    bad = [
        ([str(path), str(path), "--calib", str(calib), "--nm", "2:4"], "output path is the input"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib)], "nothing to do"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(tmp_path / "nope.npz"), "--wbits", "4"], "no such"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--wbits", "9"], "bits"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--sparsity", "0.5", "--nm", "2:4"],
         "exclusive"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--nm", "2:4", "--method", "rtn"],
         "quantizes"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--nm", "2:0"], "0 < N < M"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--block4", "0.5", "--nm", "2:4"], "exclusive"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--block4", "1.5"], "--block4 must be in"),
        ([str(path), str(tmp_path / "x.onnx"), "--calib", str(calib), "--block4", "0.5", "--method", "sparsegpt"],
         "solved by exact or magnitude"),
        ([str(path), str(tmp_path / "nodir" / "x.onnx"), "--calib", str(calib), "--nm", "2:4"], "does not exist"),
    ]
    for args, match in bad:
        r = onnxobc("compress", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert match in r.stderr and "Traceback" not in r.stderr, (match, r.stderr)
    assert not (tmp_path / "x.onnx").exists()
    assert digest(path) == before
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_high_sparsity_is_stored_sparse_and_the_file_shrinks(net, tmp_path):
    path, calib = net
    rep = compress(path, tmp_path / "s.onnx", calib, Options(sparsity=0.8))
    assert {r["weight"]: r["storage"] for r in rep["layers"]} == {"Wc": "sparse", "Wg": "sparse", "Wm": "sparse"}
    m = onnx.load(tmp_path / "s.onnx")
    assert {t.values.name for t in m.graph.sparse_initializer} == {"Wc", "Wg", "Wm"}
    dense_weights = compress(path, tmp_path / "d.onnx", calib, Options(sparsity=0.5))
    assert {r["storage"] for r in dense_weights["layers"]} == {"float32"}  # 50 %: sparse storage would be larger
    assert rep["bytes"]["output"] < 0.75 * rep["bytes"]["input"]
    # a sparse model is input like any other: its sparse initializers load as weights
    again = compress(tmp_path / "s.onnx", tmp_path / "q.onnx", calib, Options(wbits=8))
    assert {r["weight"] for r in again["layers"]} == {"Wc", "Wg", "Wm"} and again["layers"][0]["sparsity"] > 0.79


@pytest.mark.parametrize("bits,symmetric,k", [(4, True, 40), (3, False, 300), (8, True, 300), (6, False, 40)])
def test_matmulnbits_computes_exactly_what_the_dequantized_weights_do(tmp_path, bits, symmetric, k):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnx_models import make_model

    rng = np.random.default_rng(bits)
    W = rng.standard_normal((k, 24)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5, 24])
    onnx.save(make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [x], [y],
                         [numpy_helper.from_array(W, "W")]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((40, 5, k)).astype(np.float32))
    opts = dict(wbits=bits, symmetric=symmetric)
    compress(tmp_path / "m.onnx", tmp_path / "dq.onnx", tmp_path / "c.npz", Options(**opts))
    rep = compress(tmp_path / "m.onnx", tmp_path / "nb.onnx", tmp_path / "c.npz", Options(**opts, matmulnbits=True))
    assert rep["layers"][0]["storage"] == f"MatMulNBits {4 if bits <= 4 else 8}-bit"
    assert [n.op_type for n in onnx.load(tmp_path / "nb.onnx").graph.node] == ["MatMulNBits", "Add"]
    feed = {"x": rng.standard_normal((3, 5, k)).astype(np.float32)}
    as_written = ort.SessionOptions()  # the DQ graph unfused: exactly x @ dequantized W
    as_written.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(tmp_path / "dq.onnx"), as_written, providers=["CPUExecutionProvider"]).run(None, feed)
    got = ort.InferenceSession(str(tmp_path / "nb.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5 * np.abs(ref[0]).max())
