"""Static int8 activations (--abits 8): ranges, the QDQ form per runtime, onnxruntime's fusion."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx_models import make_model
from test_capture import small_net
from test_compress import onnxobc

from onnxobc.calib.capture import capture_hessians, capture_histograms, ranges_by_output
from onnxobc.calib.ranges import Histogram, fake_quantize
from onnxobc.solver.grids import activation_grid
from onnxobc.graph.layers import discover
from onnxobc.pipeline import Options, compress


def fake_quant(v, lo, hi, symmetric):
    return fake_quantize(np.asarray(v, np.float64), lo, hi, symmetric)


@pytest.mark.parametrize("lo,hi", [(-3.0, 5.0), (0.0, 6.0), (0.5, 2.0), (-7.0, -1.0), (0.0, 0.0)])
def test_activation_grid_holds_zero_exactly_and_covers_the_range(lo, hi):
    for symmetric in (False, True):
        scale, zero = activation_grid(lo, hi, symmetric)
        assert scale > 0 and (zero == 0 if symmetric else 0 <= zero <= 255)
        assert fake_quant(np.array([0.0]), lo, hi, symmetric)[0] == 0.0
        ends = np.array([min(lo, 0.0), max(hi, 0.0)])
        assert np.all(np.abs(fake_quant(ends, lo, hi, symmetric) - ends) <= scale / 2 + 1e-12)


def test_best_range_is_near_the_brute_force_optimum_on_the_raw_values():
    rng = np.random.default_rng(0)
    for symmetric in (False, True):
        v = np.concatenate([rng.laplace(0.5, 1.0, 50_000), [30.0, -20.0]])  # heavy tails and two outliers
        h = Histogram(v.min(), v.max())
        h.add(v)
        lo, hi = h.best_range(symmetric)
        err = lambda a, b: np.mean((fake_quant(v, a, b, symmetric) - v) ** 2)  # noqa: E731
        grid = np.linspace(0.05, 1.0, 60)
        pairs = [(v.min() * f, v.max() * f) for f in grid] if symmetric else \
            [(v.min() * a, v.max() * b) for a in grid for b in grid]
        best = min(err(a, b) for a, b in pairs)
        assert err(lo, hi) <= 1.1 * best and err(lo, hi) < err(v.min(), v.max())
        u = rng.uniform(-1, 3, 100_000)
        h = Histogram(u.min(), u.max())
        h.add(u)
        lo, hi = h.best_range(symmetric)
        assert hi == pytest.approx(u.max(), rel=0.05)  # nothing to clip in a uniform tensor
        assert symmetric or lo == pytest.approx(u.min(), rel=0.05)


def test_capture_ranges_are_the_min_max_whatever_the_batches():
    model = small_net()
    layers, _ = discover(model)
    x = np.random.default_rng(3).standard_normal((5, 8, 6, 6)).astype(np.float32)
    _, a = capture_hessians(model, layers, {"x": x}, batch_size=1, observe=["x", "c", "h"])
    _, b = capture_hessians(model, layers, {"x": x}, batch_size=5, observe=["x", "c", "h"])
    assert a == b and a["x"] == (float(x.min()), float(x.max()))
    best = {k: h.best_range(False) for k, h in capture_histograms(model, a, {"x": x}, batch_size=2).items()}
    assert set(best) == {"x", "c", "h"}
    assert all(a[k][0] <= best[k][0] <= 0 <= best[k][1] <= a[k][1] or a[k][0] >= 0 for k in best)


def fed_model(kind: str, seed: int = 0):
    """x read by two layers: a MatMul (x: n × 6) or a 3×3 Conv (x: n × 6 × 5 × 5) and a second
    one of the same kind; input channel 0's weights are tiny, so clipping its outliers costs the
    outputs little while it costs the tensor's own histogram a lot."""
    rng = np.random.default_rng(seed)
    shapes = {"matmul": [(6, 4), (6, 3)], "conv": [(4, 6, 3, 3), (3, 6, 1, 1)]}[kind]
    ws = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for w in ws:
        w[(slice(None), 0) if kind == "conv" else 0] *= 1e-3
    names = ["Wa", "Wb"]
    if kind == "matmul":
        nodes = [helper.make_node("MatMul", ["x", n], [f"y{i}"], name=f"mm{i}") for i, n in enumerate(names)]
        dims = ["n", 6]
    else:
        nodes = [helper.make_node("Conv", ["x", names[0]], ["y0"], name="conv0", kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]),
                 helper.make_node("Conv", ["x", names[1]], ["y1"], name="conv1", kernel_shape=[1, 1])]
        dims = ["n", 6, 5, 5]
    model = make_model(nodes, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)],
                       [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, ["n"] + [None] * (len(dims) - 1))
                        for i in range(2)],
                       [numpy_helper.from_array(w, n) for w, n in zip(ws, names)])
    x = rng.standard_normal((400 if kind == "matmul" else 40, *dims[1:])).astype(np.float32)
    at = (0,) * (len(dims) - 2)
    x[(3, 0, *at)], x[(17, 0, *at)] = 40.0, -30.0  # outliers in channel 0, fewer than 0.1 % of the values
    return model, x


@pytest.mark.parametrize("kind", ["matmul", "conv"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_a_layer_inputs_range_is_the_candidate_of_least_output_error_by_brute_force(kind, symmetric):
    """The oracle runs the float model on each candidate's fake-quantized input and sums the
    squared change of both outputs over all samples."""
    model, x = fed_model(kind)
    layers, _ = discover(model)
    _, minmax = capture_hessians(model, layers, {"x": x}, observe=["x"])
    hists = capture_histograms(model, minmax, {"x": x}, batch_size=7)
    chosen = ranges_by_output(model, hists, layers, {"x": x}, batch_size=7, symmetric=symmetric)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    dense = sess.run(None, {"x": x})

    def error(lo, hi):
        return sum(float(np.sum((a.astype(np.float64) - b) ** 2))
                   for a, b in zip(sess.run(None, {"x": fake_quantize(x, lo, hi, symmetric)}), dense))

    errors = {c: error(*c) for c in hists["x"].candidates(symmetric)}
    assert len(errors) >= 2
    assert chosen == {"x": min(errors, key=errors.get)}
    # here the tensor's own error picks a grid that costs the outputs more
    assert errors[chosen["x"]] < error(*hists["x"].best_range(symmetric))


def fused_ops(path):
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(path) + ".opt"
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(path) + ".opt").graph.node)


@pytest.fixture()
def net(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(small_net(), path)
    x = np.abs(np.random.default_rng(0).standard_normal((48, 8, 6, 6))).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    return path, tmp_path / "calib.npz"


def test_onnxruntime_form_fuses_into_int8_kernels(net, tmp_path):
    path, calib = net
    out = tmp_path / "w8a8.onnx"
    rep = compress(path, out, calib, Options(wbits=7, abits=8, slow_int8="keep"))
    m = onnx.load(out)
    zeros = {t.name: t for t in m.graph.initializer if t.name.endswith(".act_zero")}
    # both Relus are folded into the Q of the layer before them (r after the conv, h after the gemm)
    assert set(zeros) == {f"{t}.act_zero" for t in ("x", "r", "f", "h", "h2")}
    assert all(t.data_type == onnx.TensorProto.UINT8 for t in zeros.values())
    assert "Relu" not in [n.op_type for n in m.graph.node]
    biases = [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT32]
    assert {t.name for t in biases} == {"bc.conv.q", "bg.gemm.q", "Wm.shift0.mm1.q", "Wm.shift1.mm2.q"}
    ops = fused_ops(out)
    # 2-D MatMul + bias Add become Gemm, and then QGemm: nothing runs in float
    assert ops["QLinearConv"] == 1 and ops["QGemm"] == 3 and not ops.keys() & {"Conv", "Gemm", "MatMul"}
    assert ops["QLinearSigmoid"] == 1  # the Sigmoid between the Gemm and the second MatMul runs on uint8
    v = rep["verification"]
    for k, e in v["relative_output_error"].items():
        assert e < 0.05 and e == pytest.approx(v["unfused_relative_output_error"][k], rel=0.2, abs=2e-3)


def elementwise_net(seed=0):
    """Conv → a gate like hard-swish's numerator (Add 3, Clip 0..5, Mul; at hard-swish's bounds,
    0..6, loading fuses it into one node) → Div → Mul by a constant that varies along H too (one
    per channel would fold into the Conv after it) → Conv 1×1 → residual Add → Concat →
    GlobalAveragePool → Flatten → Gemm."""
    rng = np.random.default_rng(seed)
    w = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, name)  # noqa: E731
    k = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c1", "three"], ["a"], name="add3"),
             helper.make_node("Clip", ["a", "zero", "five"], ["cl"], name="clip"),
             helper.make_node("Mul", ["c1", "cl"], ["m"], name="hswish"),
             helper.make_node("Div", ["m", "six"], ["d"], name="div"),
             helper.make_node("Mul", ["d", "scale"], ["s"], name="scale"),
             helper.make_node("Conv", ["s", "W2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
             helper.make_node("Add", ["c2", "c1"], ["r"], name="residual"),
             helper.make_node("Concat", ["r", "c2"], ["cat"], name="cat", axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["gp"], name="gap"),
             helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
             helper.make_node("Gemm", ["fl", "Wg", "bg"], ["y"], name="gemm", transB=1)]
    inits = [w("W1", 8, 4, 3, 3), w("b1", 8), w("W2", 8, 8, 1, 1), w("b2", 8), w("Wg", 5, 16), w("bg", 5),
             k("three", 3.0), k("zero", 0.0), k("five", 5.0), k("six", 6.0), k("scale", rng.uniform(0.5, 2, (8, 6, 1)))]
    vi = lambda n, s: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)  # noqa: E731
    return make_model(nodes, [vi("x", ["n", 4, 6, 6])], [vi("y", ["n", 5])], inits)


def test_elementwise_neighbours_run_on_uint8_and_float_islands_stay_float(tmp_path):
    path = tmp_path / "ew.onnx"
    onnx.save(elementwise_net(), path)
    x = np.random.default_rng(1).standard_normal((40, 4, 6, 6)).astype(np.float32) * 2
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / "ew.w8a8.onnx"
    rep = compress(path, out, tmp_path / "calib.npz", Options(wbits=7, abits=8, slow_int8="keep"))
    m = onnx.load(out)
    zeros = {t.name.removesuffix(".act_zero") for t in m.graph.initializer if t.name.endswith(".act_zero")}
    # the Clip is folded into the Q of the Add before it; what follows the Div is not quantized
    assert zeros == {"x", "c1", "cl", "m", "s", "c2", "r", "cat", "gp", "fl"}
    constant_codes = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name.startswith("three.")}
    assert constant_codes["three.add3.q"].dtype == np.uint8
    assert constant_codes["three.add3.q"] * constant_codes["three.add3.scale"] == pytest.approx(3.0)
    ops = fused_ops(out)
    assert ops["QLinearConv"] == 2 and ops["QLinearAdd"] == 2 and ops["QLinearMul"] == 1
    assert ops["QLinearConcat"] == 1 and ops["QLinearGlobalAveragePool"] == 1 and ops["QGemm"] == 1
    assert not ops.keys() & {"Conv", "Gemm", "Clip", "Concat", "GlobalAveragePool"}
    assert ops["Div"] == 1 and ops["Mul"] == 1  # the float island
    v = rep["verification"]
    assert v["relative_output_error"]["y"] < 0.05
    assert v["relative_output_error"]["y"] == pytest.approx(v["unfused_relative_output_error"]["y"], rel=0.2, abs=2e-3)


def test_elementwise_ops_after_the_last_int8_layer_stay_float(tmp_path):
    """The Gemm left float (a mixed plan): the residual Add, Concat and pooling reach no int8
    layer any more, so they stay float; the hard-swish before conv2 is still quantized."""
    path = tmp_path / "ew.onnx"
    onnx.save(elementwise_net(), path)
    x = np.random.default_rng(1).standard_normal((40, 4, 6, 6)).astype(np.float32) * 2
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / "ew.mixed.onnx"
    rep = compress(path, out, tmp_path / "calib.npz", Options(wbits=7, abits=8, skip=("Wg",), slow_int8="keep"))
    ops = fused_ops(out)
    assert ops["QLinearConv"] == 2 and ops["QLinearAdd"] == 1 and ops["QLinearMul"] == 1, ops
    assert not ops.keys() & {"QLinearConcat", "QLinearGlobalAveragePool", "QGemm"}, ops
    assert ops["Concat"] == 1 and ops["GlobalAveragePool"] == 1
    assert rep["verification"]["relative_output_error"]["y"] < 0.05


def test_int8_matmul_before_a_float_layer_still_runs_as_qgemm(tmp_path):
    """MatMul + bias Add (+ Relu) quantized, the next MatMul left float: without a Q on its output,
    onnxruntime fuses the pair into a float Gemm that dequantizes the weight at every run."""
    rng = np.random.default_rng(0)
    w = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.2, name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"], name="fc0"), helper.make_node("Add", ["m0", "b0"], ["a0"]),
             helper.make_node("Relu", ["a0"], ["r0"]), helper.make_node("MatMul", ["r0", "W1"], ["m1"], name="fc1"),
             helper.make_node("Add", ["m1", "b1"], ["y"])]
    vi = lambda n, s: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)  # noqa: E731
    model = make_model(nodes, [vi("x", ["n", 32])], [vi("y", ["n", 8])],
                       [w("W0", 32, 64), w("b0", 64), w("W1", 64, 8), w("b1", 8)])
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((64, 32)).astype(np.float32))
    rep = compress(tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "c.npz",
                   Options(wbits=7, abits=8, skip=("W1",), slow_int8="keep"))
    ops = fused_ops(tmp_path / "q.onnx")
    assert ops["QGemm"] == 1 and ops["DequantizeLinear"] == 1, ops  # the only DQ turns fc0's uint8 output to float
    assert rep["verification"]["relative_output_error"]["y"] < 0.05


def test_tensorrt_form_is_symmetric_on_layer_inputs_only(net, tmp_path):
    path, calib = net
    out = tmp_path / "trt.onnx"
    rep = compress(path, out, calib, Options(wbits=8, abits=8, runtime="tensorrt", slow_int8="keep"))
    m = onnx.load(out)
    zeros = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name.endswith(".act_zero")}
    assert set(zeros) == {f"{t}.act_zero" for t in ("x", "f", "h", "h2")}
    assert all(z.dtype == np.int8 and z == 0 for z in zeros.values())
    assert not [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT32]  # float biases
    assert [n.op_type for n in m.graph.node].count("Relu") == 2
    assert all(e < 0.05 for e in rep["verification"]["relative_output_error"].values())


def test_deepsparse_form_is_qlinearconv_and_matmulinteger_with_per_tensor_weights(net, tmp_path, monkeypatch):
    """Every layer is rewritten into the operator form; its outputs are those of the same layers
    in QDQ form (the rewrite's oracle, run unfused), up to float rounding of the requantization."""
    from onnxobc.graph import activation_qdq

    path, calib = net
    out = tmp_path / "ds.onnx"
    rep = compress(path, out, calib, Options(wbits=8, abits=8, runtime="deepsparse", slow_int8="keep"))
    m = onnx.load(out)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["QLinearConv"] == 1 and ops["MatMulInteger"] == 3 and not ops.keys() & {"Conv", "Gemm", "MatMul"}
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"} and m.ir_version <= 9
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "QLinearConv":
            assert inits[n.input[4]].ndim == 0 and inits[n.input[5]] == 0  # per-tensor, symmetric
            assert inits[n.input[3]].dtype == np.int8 and inits[n.input[8]].dtype == np.int32
        if n.op_type == "MatMulInteger":
            assert inits[n.input[1]].dtype == np.int8 and inits[n.input[3]].ndim == 0
    assert all(r["storage"] == "int8, per-tensor" for r in rep["layers"])
    monkeypatch.setattr(activation_qdq, "to_qoperator", lambda model, layers: 0)
    compress(path, tmp_path / "qdq.onnx", calib, Options(wbits=8, abits=8, runtime="deepsparse", slow_int8="keep"))
    x = {"x": np.load(calib)["x"][-12:]}
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got, ref = (ort.InferenceSession(str(p), plain, providers=["CPUExecutionProvider"]).run(None, x)[0]
                for p in (out, tmp_path / "qdq.onnx"))
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-3
    assert rep["verification"]["relative_output_error"]["y"] < 0.05


def test_digits_w8a8_keeps_accuracy(tmp_path):
    import pathlib

    digits = pathlib.Path(__file__).parents[1] / "models" / "digits"
    out = tmp_path / "d.onnx"
    compress(digits / "mlp.onnx", out, digits / "calib.npz", Options(wbits=7, abits=8, slow_int8="keep"))
    assert fused_ops(out)["QGemm"] == 3
    test = np.load(digits / "test.npz")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert np.mean(sess.run(None, {"x": test["x"]})[0].argmax(1) == test["label"]) >= 0.98


@pytest.mark.parametrize("args,message", [
    (["--wbits", "8", "--abits", "4"], "--abits supports 8"),
    (["--abits", "8"], "need int8 weights"),
    (["--wbits", "4", "--abits", "8"], "need int8 weights"),
    (["--wbits", "8", "--abits", "8", "--asym", "--runtime", "tensorrt"], "symmetric int8 only"),
    (["--wbits", "8", "--abits", "8", "--runtime", "openvino"], "--runtime must be one of"),
    (["--wbits", "4", "--runtime", "deepsparse"], "use --wbits 5 to 8 for --runtime deepsparse"),
    (["--nm", "2:4", "--matmulnbits"], "--matmulnbits writes weight-only"),
    (["--wbits", "8", "--abits", "8", "--matmulnbits"], "--matmulnbits writes weight-only"),
])
def test_bad_activation_options(net, tmp_path, args, message):
    path, calib = net
    r = onnxobc("compress", str(path), str(tmp_path / "o.onnx"), "--calib", str(calib), *args)
    assert r.returncode == 2 and message in r.stderr and not (tmp_path / "o.onnx").exists()


def test_auto_ranges_keep_the_choice_of_lower_held_out_error(tmp_path):
    model, x = fed_model("matmul")
    onnx.save(model, tmp_path / "fed.onnx")
    np.savez(tmp_path / "calib.npz", x=x)
    reports = {how: compress(tmp_path / "fed.onnx", tmp_path / f"{how}.onnx", tmp_path / "calib.npz",
                             Options(wbits=8, abits=8, act_ranges=how, slow_int8="keep"))
               for how in ("auto", "output", "histogram")}
    chosen = reports["auto"]["activation_ranges"]
    errors = {how: max(reports[how]["verification"]["relative_output_error"].values()) for how in ("output", "histogram")}
    assert chosen["held_out_error"] == pytest.approx(errors)
    assert errors["output"] != errors["histogram"]
    assert chosen["chosen"] == min(errors, key=errors.get)
    assert (tmp_path / "auto.onnx").read_bytes() == (tmp_path / f"{chosen['chosen']}.onnx").read_bytes()
    assert any(n.startswith("int8 activation ranges by") for n in reports["auto"]["notes"])
    assert "activation_ranges" not in reports["output"]
