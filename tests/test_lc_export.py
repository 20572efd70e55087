"""Low-rank and codebook layers written as ONNX: each form computes exactly what the dense model
with the same effective weight computes (onnxruntime on both), the codebook's indices are packed
to their bit width and folded away when onnxruntime loads the model, and the whole pipeline
(--rank, --codebook, budgets with these levels, bad options) works end to end."""

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_model, effective_weights, make_model, run
from test_capture import small_net
from test_compress import onnxobc

from onnxobc.graph.codebook import index_bits, store_codebook
from onnxobc.graph.layers import discover
from onnxobc.graph.lowrank import add_low_rank_part, store_low_rank
from onnxobc.graph.qdq import ensure_opset, store_quantized
from onnxobc.graph.write import set_weights
from onnxobc.pipeline import Options, compress
from onnxobc.solver import fit_uniform_grid, rank_for

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = DIGITS / "mlp.onnx", DIGITS / "calib.npz"
F = TensorProto.FLOAT


def gemm_model(trans_b, alpha=0.7, beta=1.3):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((9, 14) if trans_b else (14, 9)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(rng.standard_normal(9).astype(np.float32), "C")]
    node = helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="gemm", transB=trans_b, alpha=alpha, beta=beta)
    return make_model([node], [helper.make_tensor_value_info("x", F, ["n", 14])],
                      [helper.make_tensor_value_info("y", F, ["n", 9])], inits)


def matmul_model():
    W = np.random.default_rng(3).standard_normal((14, 9)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    return make_model([node], [helper.make_tensor_value_info("x", F, ["b", "t", 14])],
                      [helper.make_tensor_value_info("y", F, ["b", "t", 9])], [numpy_helper.from_array(W, "W")])


CASES = {
    "conv3x3_strided": (lambda: conv_model(6, 10, (3, 3), strides=[2, 2], pads=[1, 0, 1, 2], dilations=[1, 2])[0],
                        {"x": (2, 6, 9, 11)}),
    "conv1d": (lambda: conv_model(5, 7, (3,), pads=[1, 1])[0], {"x": (3, 5, 8)}),
    "gemm_transB": (lambda: gemm_model(1), {"x": (4, 14)}),
    "gemm": (lambda: gemm_model(0), {"x": (4, 14)}),
    "matmul_3d": (matmul_model, {"x": (2, 3, 14)}),
    "shared_matmul": (small_net, {"x": (2, 8, 6, 6)}),
}


def feeds(shapes):
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("case", CASES)
def test_low_rank_form_computes_the_product_of_its_factors(case):
    build, shapes = CASES[case]
    model = build()
    layer = next(l for l in discover(model)[0] if l.groups == 1 and l.weight in ("W", "Wm"))
    rng = np.random.default_rng(1)
    r = 2
    A, B = rng.standard_normal((layer.rows, r)).astype(np.float32), rng.standard_normal((r, layer.cols)).astype(np.float32)
    expected = run(set_weights(model, {layer.weight: layer.weight_from([A @ B])}), feeds(shapes))
    store_low_rank(model, layer, A, B)
    onnx.checker.check_model(model)
    got = run(model, feeds(shapes))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    names = {n.name for n in model.graph.node}
    assert set(layer.nodes) <= names and {f"{n}.lr_in" for n in layer.nodes} <= names  # the name stays on the 2nd
    assert layer.weight not in {t.name for t in model.graph.initializer}


def _layer_and_factors(model, r=2, seed=1):
    layer = next(l for l in discover(model)[0] if l.groups == 1 and l.weight in ("W", "Wm"))
    rng = np.random.default_rng(seed)
    return layer, rng.standard_normal((layer.rows, r)).astype(np.float32), \
        rng.standard_normal((r, layer.cols)).astype(np.float32)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("case", CASES)
def test_quantized_factors_form_computes_the_product_of_the_dequantized_factors(case, bits):
    build, shapes = CASES[case]
    model = ensure_opset(build(), 21)
    layer, A, B = _layer_and_factors(model, r=3)
    ga, gb = fit_uniform_grid(A, bits), fit_uniform_grid(B, bits)
    Aq, Bq = ga.dequantize(ga.codes(A)), gb.dequantize(gb.codes(B))
    expected = run(set_weights(model, {layer.weight: layer.weight_from([Aq @ Bq])}), feeds(shapes))
    store_low_rank(model, layer, A, B, quantized=(ga, gb, bits, True))
    onnx.checker.check_model(model)
    # unfused: onnxruntime turns a 4-bit DequantizeLinear → MatMul into MatMulNBits, whose kernel
    # rounds the activations to int8 (about 0.5 % here), which is not what the graph says
    for e, g in zip(expected, run(model, feeds(shapes), fuse=False)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    inits = {t.name: t for t in model.graph.initializer}
    kind = TensorProto.INT4 if bits == 4 else TensorProto.INT8
    assert inits[f"{layer.weight}.lr_in.q"].data_type == inits[f"{layer.weight}.lr_out.q"].data_type == kind
    assert not {f"{layer.weight}.lr_in", f"{layer.weight}.lr_out"} & set(inits)  # no float copy left


@pytest.mark.parametrize("base", ["float", "quantized"])
@pytest.mark.parametrize("case", CASES)
def test_low_rank_part_is_added_to_whatever_the_weight_is(case, base):
    build, shapes = CASES[case]
    model = ensure_opset(build(), 13)
    layer, A, B = _layer_and_factors(model, seed=4)
    W = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == layer.weight))
    if base == "quantized":
        grid = fit_uniform_grid(layer.matrices(W)[0], 8)
        codes = grid.codes(layer.matrices(W)[0])
        W = layer.weight_from([grid.dequantize(codes)])
        store_quantized(model, layer.weight, layer.output_axis, layer.weight_from([codes]), grid.scale, grid.zero, 8,
                        True)
    expected = run(set_weights(build(), {layer.weight: W + layer.weight_from([A @ B])}), feeds(shapes))
    renamed = add_low_rank_part(model, layer, A, B)
    assert renamed == (f"{layer.weight}.base" if base == "float" else None)
    onnx.checker.check_model(model)
    for e, g in zip(expected, run(model, feeds(shapes))):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 16, 17, 256])
@pytest.mark.parametrize("case,shared", [("conv3x3_strided", False), ("gemm", True), ("gemm", False),
                                         ("matmul_3d", False)])
def test_codebook_form_rebuilds_the_weight_from_packed_indices(k, case, shared):
    build, shapes = CASES[case]
    model = build()
    layer = discover(model)[0][0]
    rng = np.random.default_rng(k)
    channels = layer.rows * layer.groups
    values = np.sort(rng.standard_normal((1 if shared else channels, k)), axis=1).astype(np.float32)
    values = np.broadcast_to(values, (channels, k))
    codes_view = rng.integers(0, k, (channels, layer.cols))
    want = layer.weight_from([np.take_along_axis(values, codes_view, axis=1)])
    expected = run(set_weights(model, {layer.weight: want}), feeds(shapes))
    store_codebook(model, layer, layer.weight_from([codes_view]), values)
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(effective_weights(model, [layer.weight], feeds(shapes))[layer.weight], want)
    for e, g in zip(expected, run(model, feeds(shapes))):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits[f"{layer.weight}.cb_codes"].size == -(-want.size * index_bits(k) // 8)
    assert inits[f"{layer.weight}.cb_values"].size == (1 if shared else channels) * k
    # every input of the rebuild is constant: onnxruntime folds it when it loads the model
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(pathlib.Path(__import__("tempfile").mkdtemp()) / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert not {"Gather", "BitShift"} & {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}


def digits_effective(path, feeds_):
    names = ["fc0.weight", "fc1.weight", "fc2.weight"]
    return effective_weights(onnx.load(path), names, feeds_)


def test_rank_end_to_end_beats_plain_svd_on_the_trained_digits_model(tmp_path):
    out = tmp_path / "lr.onnx"
    rep = compress(MODEL, out, CALIB, Options(rank=0.5))
    model = onnx.load(out)
    assert [n.op_type for n in model.graph.node].count("Gemm") == 6
    assert all(r["storage"].startswith("low-rank, rank") for r in rep["layers"])
    ours = rep["verification"]["relative_output_error"]["logits"]
    # the same ranks by truncated SVD of W alone (no calibration data), same held-out samples
    dense = onnx.load(MODEL)
    plain = {}
    for layer, row in zip(discover(dense)[0], rep["layers"]):
        r = int(row["storage"].split()[-1])
        W = layer.matrices(numpy_helper.to_array(next(t for t in dense.graph.initializer if t.name == layer.weight)))[0]
        U, S, Vt = np.linalg.svd(W, full_matrices=False)
        plain[layer.weight] = layer.weight_from([(U[:, :r] * S[:r]) @ Vt[:r]])
    x = np.load(CALIB)["x"]
    held = x[len(x) - rep["verification"]["samples"]:]
    ref = run(dense, {"x": held})[0]
    svd = run(set_weights(dense, plain), {"x": held})[0]
    svd_err = np.linalg.norm(svd - ref) / np.linalg.norm(ref)
    assert ours < 0.85 * svd_err, (ours, svd_err)


@pytest.mark.parametrize("book,per_row_values", [("16", None), ("16-row", 16), ("ternary", 3), ("binary", 2)])
def test_codebook_end_to_end_on_the_digits_model(tmp_path, book, per_row_values):
    out = tmp_path / "cb.onnx"
    rep = compress(MODEL, out, CALIB, Options(codebook=book))
    assert rep["verification"]["relative_output_error"]["logits"] < (0.05 if book[0].isdigit() else 0.6)
    x = np.load(CALIB)["x"][:2]
    layers = {l.weight: l for l in discover(onnx.load(MODEL))[0]}
    for name, W in digits_effective(out, {"x": x}).items():
        W = layers[name].matrices(W)[0]  # rows are output channels
        if per_row_values is None:
            assert len(np.unique(W)) <= 16
        else:
            assert max(len(np.unique(row)) for row in W) <= per_row_values
        if book in ("binary", "ternary"):
            c = np.abs(W).max(axis=1, keepdims=True)
            assert np.all(np.isclose(np.abs(W), c) | (W == 0 if book == "ternary" else False))
    ratio = pathlib.Path(MODEL).stat().st_size / out.stat().st_size
    assert ratio > {"16": 5, "16-row": 2.2, "ternary": 5, "binary": 6}[book], ratio


def test_outliers_end_to_end_on_the_digits_model(tmp_path):
    plain = compress(MODEL, tmp_path / "w3.onnx", CALIB, Options(wbits=3))
    rep = compress(MODEL, tmp_path / "o.onnx", CALIB, Options(wbits=3, outliers=0.02))
    err = rep["verification"]["relative_output_error"]["logits"]
    assert err < 0.85 * plain["verification"]["relative_output_error"]["logits"]
    model = onnx.load(tmp_path / "o.onnx")
    sparse = {t.values.name: t for t in model.graph.sparse_initializer}
    layers = {l.weight: l for l in discover(onnx.load(MODEL))[0]}
    x = np.load(CALIB)["x"][:2]
    names = list(layers) + [f"{w}.quantized" for w in layers]
    got = effective_weights(model, names, {"x": x})
    for w, layer in layers.items():
        part = numpy_helper.to_array(sparse[f"{w}.outliers"].values)
        assert 0 < part.size <= 0.02 * np.prod(layer.weight_shape) + 1
        outlier = got[w] - got[f"{w}.quantized"]
        assert np.count_nonzero(outlier) <= part.size
        q = layer.matrices(got[f"{w}.quantized"])[0]
        assert max(len(np.unique(row)) for row in q) <= 8  # each row on its 3-bit grid
    assert all(r["storage"] == "int3 + sparse float outliers" for r in rep["layers"])


def test_quantized_factors_end_to_end_on_the_digits_model(tmp_path):
    float_lr = compress(MODEL, tmp_path / "lr.onnx", CALIB, Options(rank=0.5))
    rep = compress(MODEL, tmp_path / "lrq.onnx", CALIB, Options(rank=0.5, wbits=4))
    assert all(r["storage"] == f"low-rank, rank {int(f['storage'].split()[-1])}, int4 factors"
               for r, f in zip(rep["layers"], float_lr["layers"]))
    err, float_err = (r["verification"]["relative_output_error"]["logits"] for r in (rep, float_lr))
    assert err < 1.5 * float_err, (err, float_err)
    assert rep["bytes"]["output"] < 0.25 * float_lr["bytes"]["output"]
    model = onnx.load(tmp_path / "lrq.onnx")
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) == 6
    assert not any(t.data_type == TensorProto.FLOAT and t.name.endswith((".lr_in", ".lr_out"))
                   for t in model.graph.initializer)


@pytest.mark.parametrize("args,alone", [({"wbits": 2}, {"wbits": 2}), ({"sparsity": 0.9}, {"sparsity": 0.9}),
                                        ({"wbits": 4, "outliers": 0.01}, {"wbits": 4, "outliers": 0.01})])
def test_low_rank_part_end_to_end_on_the_digits_model(tmp_path, args, alone):
    off = dict(sequential="off")  # the part's own gain, both solved the same way
    base = compress(MODEL, tmp_path / "base.onnx", CALIB, Options(**alone, **off))
    rep = compress(MODEL, tmp_path / "plus.onnx", CALIB, Options(**args, **off, plus_rank=0.05))
    err, base_err = (r["verification"]["relative_output_error"]["logits"] for r in (rep, base))
    assert err < 0.9 * base_err, (err, base_err)
    assert all("low-rank part of rank" in r["storage"] for r in rep["layers"])
    model = onnx.load(tmp_path / "plus.onnx")
    layers = discover(onnx.load(MODEL))[0]
    sparse = {t.values.name: t for t in model.graph.sparse_initializer}
    exposed = [l.weight for l in layers] + ([] if "sparsity" in args else [f"{l.weight}.base" for l in layers])
    got = effective_weights(model, exposed, {"x": np.load(CALIB)["x"][:2]})
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for l in layers:
        if "sparsity" in args:  # the sparse part is the weight's initializer, stored sparse under its own name
            t = sparse[f"{l.weight}.base"]
            base = np.zeros(int(np.prod(t.dims)), np.float32)
            base[numpy_helper.to_array(t.indices)] = numpy_helper.to_array(t.values)
            got[f"{l.weight}.base"] = base.reshape(tuple(t.dims))
            assert np.mean(base == 0) >= 0.89
        A, B = inits[f"{l.weight}.plus_left"], inits[f"{l.weight}.plus_right"]
        np.testing.assert_allclose(got[l.weight] - got[f"{l.weight}.base"], A @ B, rtol=1e-4, atol=1e-5)
        assert min(A.shape) == rank_for(l.rows, l.cols, 0.05)


def test_size_budget_with_additive_and_quantized_factor_levels(tmp_path):
    r = onnxobc("compress", str(MODEL), str(tmp_path / "s.onnx"), "--calib", str(CALIB), "--size", "0.1",
                "--levels", "dense", "w2+r0.050", "s0.900+r0.050", "lr0.500+w4", "lr0.250+w4", "w4",
                "--report", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["budget"]["measured_share"] <= 0.1
    assert set(rep["plan"].values()) - {"w4", "dense"}, rep["plan"]
    r = onnxobc("compress", str(MODEL), str(tmp_path / "s2.onnx"), "--calib", str(CALIB), "--size", "0.1",
                "--levels", "dense", "w2+r0.050", "s0.900+r0.050", "lr0.500+w4", "lr0.250+w4", "w4",
                "--report", str(tmp_path / "s2.json"), "--db", rep["database"]["path"])
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "s2.json").read_text())
    assert again["database"]["computed"] == 0 and again["plan"] == rep["plan"]
    assert (tmp_path / "s.onnx").read_bytes() == (tmp_path / "s2.onnx").read_bytes()  # from the database alone


def test_budgets_choose_low_rank_and_codebook_levels(tmp_path):
    r = onnxobc("compress", str(MODEL), str(tmp_path / "f.onnx"), "--calib", str(CALIB), "--flops", "1.8x",
                "--levels", "dense", "lr0.750", "lr0.500", "lr0.250", "--report", str(tmp_path / "f.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "f.json").read_text())
    assert rep["budget"]["predicted_layer_cost"] <= rep["budget"]["layer_budget"]
    assert any(v.startswith("lr") for v in rep["plan"].values())
    r = onnxobc("compress", str(MODEL), str(tmp_path / "s.onnx"), "--calib", str(CALIB), "--size", "0.12",
                "--levels", "dense", "cb16", "ternary", "binary", "lr0.250", "--report", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["budget"]["measured_share"] <= 0.12
    onnx.checker.check_model(onnx.load(tmp_path / "s.onnx"))


@pytest.mark.parametrize("args,message", [
    (["--rank", "1.5"], "--rank is the share"),
    (["--rank", "0.5", "--wbits", "4", "--abits", "8"], "drop --abits"),
    (["--rank", "0.5", "--wbits", "4", "--method", "magnitude"], "exact, gptq or rtn"),
    (["--rank", "0.5", "--method", "rtn"], "closed form"),
    (["--codebook", "1"], "--codebook takes"),
    (["--codebook", "16x"], "--codebook takes"),
    (["--codebook", "16", "--sparsity", "0.5"], "drop --sparsity"),
    (["--codebook", "binary", "--method", "magnitude"], "exact, gptq or rtn"),
    (["--speedup", "2x", "--levels", "lr0.500+w8a8"], "lr<share> is a compression of its own"),
    (["--plus-rank", "0.05"], "adds a low-rank part to quantized"),
    (["--plus-rank", "0.05", "--nm", "2:4"], "does not combine with --nm"),
    (["--plus-rank", "1.5", "--wbits", "4"], "--plus-rank is the share"),
    (["--plus-rank", "0.05", "--wbits", "8", "--abits", "8"], "drop --abits"),
    (["--plus-rank", "0.05", "--wbits", "4", "--sparsity", "0.5"], "adds to one part"),
    (["--plus-rank", "0.05", "--rank", "0.5", "--wbits", "4"], "drop --plus-rank"),
    (["--size", "0.5", "--levels", "w8a8+r0.050"], "r<share> folds its part into the weight"),
    (["--speedup", "2x", "--rank", "0.5"], "chooses each layer's level itself"),
    (["--outliers", "0.01"], "it needs --wbits"),
    (["--outliers", "0.01", "--wbits", "8", "--abits", "8"], "it needs --wbits, and no --abits"),
    (["--outliers", "0.7", "--wbits", "4"], "in (0, 0.5)"),
    (["--outliers", "0.01", "--wbits", "4", "--sparsity", "0.5"], "does not combine with pruning"),
    (["--outliers", "0.01", "--wbits", "4", "--method", "magnitude"], "exact, gptq or rtn"),
    (["--size", "0.5", "--levels", "s0.500+w4+o0.010"], "o<share> does not combine with pruning"),
])
def test_bad_low_rank_and_codebook_options(tmp_path, args, message):
    r = onnxobc("compress", str(MODEL), str(tmp_path / "o.onnx"), "--calib", str(CALIB), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o.onnx").exists()
