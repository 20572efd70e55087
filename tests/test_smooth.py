"""Smoothing activation outliers into the weights (graph/smooth.py, calib/smoothing.py, --smooth):
the float model computes the same, the α chosen per tensor is the one onnxruntime measures best,
and with int8 activations it lowers the output error on a model whose inputs have outlier
channels."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run
from test_channels import attention
from test_compress import onnxobc

from onnxobc import runtimes
from onnxobc.budget import compress_to_budget
from onnxobc.calib.smoothing import ALPHAS, WeightGrid, choose_smoothing, scales_for
from onnxobc.channel_units import units
from onnxobc.db.build import for_levels
from onnxobc.db.levels import Level, parse
from onnxobc.graph.dynamic import store_dynamic
from onnxobc.graph.layers import discover, weight_array
from onnxobc.graph.smooth import SUFFIX, smooth, smoothable
from onnxobc.options import Options
from onnxobc.pipeline import compress
from onnxobc.prepare import load
from onnxobc.solver import fit_uniform_grid

# 7 where onnxruntime's int8 kernels saturate 8-bit weights (no VNNI), which smoothing's error model does not mimic
WBITS = runtimes.get("onnxruntime").int8_weight_bits()
DYN = f"w{WBITS}a8dyn"
OUTLIERS = (3, 11)  # input channels 30x larger than the others, as LayerNorm outputs in BERTs have


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def block(rng, k=16, hidden=32):
    """x → MatMul q and Gemm (transB) g, both reading x, x also read by a residual Add;
    → Relu → MatMul down."""
    w = lambda name, *s: numpy_helper.from_array((0.3 * rng.standard_normal(s)).astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
             helper.make_node("Reshape", ["x", "shape"], ["x2"]),
             helper.make_node("Gemm", ["x2", "wg"], ["g"], name="g", transB=1),
             helper.make_node("Relu", ["q"], ["r"]),
             helper.make_node("MatMul", ["r", "wd"], ["d"], name="down"),
             helper.make_node("Add", ["d", "x"], ["y"], name="residual")]
    shape = numpy_helper.from_array(np.array([-1, k], np.int64), "shape")
    return make_model(nodes, [vi("x", ["n", 6, k])], [vi("y", ["n", 6, k]), vi("g", ["m", 8])],
                      [w("wq", k, hidden), w("wg", 8, k), w("wd", hidden, k), shape])


def samples(rng, n, k=16):
    x = rng.standard_normal((n, 6, k)).astype(np.float32)
    x[..., list(OUTLIERS)] *= 30
    return x


def test_smoothing_keeps_the_float_model_and_branches_off_other_readers():
    rng = np.random.default_rng(0)
    model = block(rng)
    x = samples(rng, 4)
    before = run(model, {"x": x})
    layers, _ = discover(model)
    readers = smoothable(model, layers)
    assert set(readers) == {"x", "x2", "r"}
    s = {t: rng.uniform(0.2, 5, ls[0].cols).astype(np.float32) for t, ls in readers.items()}
    smooth(model, readers, s)
    onnx.checker.check_model(model, full_check=True)
    for a, b in zip(before, run(model, {"x": x})):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    assert {a for ls in readers.values() for l in ls for a in l.activations} == {t + SUFFIX for t in readers}
    residual = next(n for n in model.graph.node if n.name == "residual")
    assert list(residual.input) == ["d", "x"]  # the residual still reads x itself


def test_a_weight_read_by_two_tensors_or_by_other_nodes_is_not_smoothed():
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["a", "w"], ["ya"], name="ma"), helper.make_node("MatMul", ["b", "w"], ["yb"],
                                                                                          name="mb"),
             helper.make_node("MatMul", ["a", "v"], ["yc"], name="mc"), helper.make_node("Transpose", ["v"], ["vt"])]
    v = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "v")
    model = make_model(nodes, [vi("a", [2, 4]), vi("b", [2, 4])], [vi(o, [2, 4]) for o in ("ya", "yb", "yc", "vt")],
                       [w, v])
    layers, _ = discover(model)
    assert smoothable(model, layers) == {}


def _dynamic_error(model, readers, t, s, x, grid_bits=WBITS):
    """Squared error of t's readers' outputs, onnxruntime running them in the dynamic int8 form
    with weights rounded to the grid the choice assumes, against the dense outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    layers, _ = discover(m)
    mine = {t: [l for l in layers if l.weight in {r.weight for r in readers[t]}]}
    if s is not None:
        smooth(m, mine, {t: s})
    for l in mine[t]:
        W = l.matrices(weight_array(m, l.weight))[0].astype(np.float64)
        grid = fit_uniform_grid(W, grid_bits, True, mse=False)
        store_dynamic(m, l, grid.codes(W).T, grid.scale)
    outs = [l.nodes[0] for l in readers[t]]
    names = {n.name: n.output[0] for n in model.graph.node}
    m.graph.output.extend([helper.make_tensor_value_info(names[o], TensorProto.FLOAT, None) for o in outs])
    model.graph.output.extend([helper.make_tensor_value_info(names[o], TensorProto.FLOAT, None) for o in outs])
    got, ref = run(m, {"x": x})[-len(outs):], run(model, {"x": x})[-len(outs):]
    del model.graph.output[-len(outs):]
    return sum(float(np.sum((g.astype(np.float64) - r) ** 2)) for g, r in zip(got, ref))


def test_auto_picks_the_alpha_onnxruntime_measures_best():
    """One batch (the dynamic range is the batch's, as at run time), every row sampled: the choice
    equals the least error onnxruntime measures over no smoothing and each α, and smoothing wins
    on a tensor with outlier channels."""
    rng = np.random.default_rng(2)
    model = block(rng)
    x = samples(rng, 8)
    layers, _ = discover(model)
    readers = {"x": smoothable(model, layers)["x"]}
    arrays = {l.weight: weight_array(model, l.weight) for l in readers["x"]}
    chosen = choose_smoothing(model, readers, arrays, {"x": x}, 8, "auto", True, False, WeightGrid(WBITS))
    x_max = np.abs(x.reshape(-1, 16)).max(0)
    w_max = np.max([np.abs(l.matrices(arrays[l.weight])[0]).max(0) for l in readers["x"]], 0)
    measured = [_dynamic_error(model, readers, "x", None, x)]
    measured += [_dynamic_error(model, readers, "x", scales_for(a, x_max, w_max), x) for a in ALPHAS]
    best = int(np.argmin(measured))
    assert best > 0, measured
    assert chosen["x"][0] == ALPHAS[best - 1]
    np.testing.assert_allclose(chosen["x"][1], scales_for(ALPHAS[best - 1], x_max, w_max))


def test_a_fixed_alpha_is_taken_as_given():
    rng = np.random.default_rng(3)
    model = block(rng)
    layers, _ = discover(model)
    readers = smoothable(model, layers)
    arrays = {l.weight: weight_array(model, l.weight) for ls in readers.values() for l in ls}
    chosen = choose_smoothing(model, readers, arrays, {"x": samples(rng, 8)}, 4, 0.3, False, False, WeightGrid(7))
    assert set(chosen) == set(readers) and {a for a, _ in chosen.values()} == {0.3}


@pytest.fixture()
def outlier_block(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "block.onnx"
    onnx.save(block(rng), path)
    np.savez(tmp_path / "c.npz", x=samples(rng, 64))
    return path, tmp_path / "c.npz"


def test_compress_with_smoothing_has_lower_error(outlier_block, tmp_path):
    path, calib = outlier_block
    errors = {}
    for how in ("auto", "off"):
        out = tmp_path / f"{how}.onnx"
        report = compress(path, out, calib,
                          Options(wbits=WBITS, abits="dynamic", smooth=how, method="rtn", slow_int8="keep"))
        errors[how] = report["verification"]["relative_output_error"]["y"]
        smoothing = [n for n in onnx.load(out).graph.node if n.output[0].endswith(SUFFIX)]
        assert bool(smoothing) == (how == "auto") == bool(report.get("smoothing"))
        assert all(n.op_type == "Mul" for n in smoothing)
    assert errors["auto"] < 0.75 * errors["off"], errors


def test_static_int8_smooths_with_enough_rows_and_the_division_stays_float(tmp_path):
    """With --abits 8, "auto" smooths only on enough calibration rows (on 48 × 6 it measured
    worse at the output: the tight range fitted the rows that set it) and then lowers the error;
    the division stays float (it is what makes x quantizable), ahead of the layers' Q/DQ."""
    rng = np.random.default_rng(4)
    path = tmp_path / "block.onnx"
    onnx.save(block(rng), path)
    x = samples(rng, 400)
    np.savez(tmp_path / "few.npz", x=x[:64])
    np.savez(tmp_path / "many.npz", x=x)
    report = compress(path, tmp_path / "few.onnx", tmp_path / "few.npz",
                      Options(wbits=8, abits=8, slow_int8="keep"))
    assert "smoothing" not in report
    errors = {}
    for how in ("auto", "off"):
        report = compress(path, tmp_path / f"{how}.onnx", tmp_path / "many.npz",
                          Options(wbits=8, abits=8, smooth=how, batch_size=50, slow_int8="keep"))
        errors[how] = report["verification"]["relative_output_error"]["y"]
    assert report.get("smoothing") is None and errors["auto"] < 0.75 * errors["off"], errors
    m = onnx.load(tmp_path / "auto.onnx")
    smoothing = [n for n in m.graph.node if n.output[0].endswith(SUFFIX)]
    dequantized = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    quantized = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert smoothing and not any(set(n.input) & dequantized for n in smoothing)
    assert {n.output[0] for n in smoothing} <= quantized


def test_smooth_is_checked_on_the_command_line(outlier_block, tmp_path):
    path, calib = outlier_block
    for bad in ("2", "abc"):
        r = onnxobc("compress", path, tmp_path / "o.onnx", "--calib", calib, "--wbits", "8", "--abits", "8",
                    "--smooth", bad)
        assert r.returncode == 2 and "--smooth" in r.stderr
        assert not (tmp_path / "o.onnx").exists()
    r = onnxobc("compress", path, tmp_path / "o.onnx", "--calib", calib, "--wbits", "8", "--abits", "dynamic",
                "--smooth", "0.5", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads((tmp_path / "r.json").read_text())["smoothing"].values()) == {0.5}


def test_a_budget_starts_from_the_model_smoothed_for_its_int8_levels(outlier_block, tmp_path):
    """A budget whose levels quantize activations solves every level on the smoothed model (the
    outliers of x moved into q's weights, for dynamic int8): its int8 plan has the lower error."""
    path, calib = outlier_block
    errors = {}
    for how in ("auto", "off"):
        out = tmp_path / f"{how}.onnx"
        report = compress_to_budget(path, out, calib, Options(smooth=how, method="rtn"), "size", "0.1",
                                    best_effort=True, levels=[Level(), parse(DYN)])
        errors[how] = report["verification"]["relative_output_error"]["y"]
        assert report["plan"] == {"wq": DYN, "wg": "dense", "wd": DYN}
        smoothing = {n.output[0] for n in onnx.load(out).graph.node if n.output[0].endswith(SUFFIX)}
        assert smoothing == {t + SUFFIX for t in report.get("smoothing", ())}
        assert ("x" + SUFFIX in smoothing) == (how == "auto")
    assert errors["auto"] < 0.75 * errors["off"], errors


def test_budget_stages_smooth_as_compress_does(outlier_block, tmp_path):
    """db build, plan and stitch each smooth the model for the database's int8 levels alike: the
    stitched file is the one compress writes from the same database."""
    path, calib = outlier_block
    db, common = str(tmp_path / "db"), ["--calib", calib, "--method", "rtn"]
    levels = ["--levels", "dense", "w8a8dyn"]
    assert onnxobc("db", "build", path, "--db", db, "--cost", "size", *common, *levels).returncode == 0
    r = onnxobc("plan", path, "--db", db, "--size", "0.1", "--best-effort", "--out", tmp_path / "p.json",
                *common, *levels)
    assert r.returncode == 0, r.stderr
    r = onnxobc("stitch", path, tmp_path / "s.onnx", "--db", db, "--plan", tmp_path / "p.json", *common)
    assert r.returncode == 0, r.stderr
    r = onnxobc("compress", path, tmp_path / "c.onnx", "--db", db, "--size", "0.1", "--best-effort", *common, *levels,
                "--report", tmp_path / "c.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c.json").read_text())["database"]["computed"] == 0
    assert (tmp_path / "s.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()
    assert any(n.output[0].endswith(SUFFIX) for n in onnx.load(tmp_path / "s.onnx").graph.node)


def test_attention_output_inputs_are_not_smoothed_for_a_budget(tmp_path):
    """A head cut narrows the output projection's input, so a budget leaves that tensor alone;
    the projections' shared input is smoothed, and the heads can still be cut."""
    model, shape = attention()
    onnx.save(model, tmp_path / "a.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).standard_normal((40,) + shape).astype(np.float32))
    options = Options(smooth=0.5)
    prep = load(tmp_path / "a.onnx", tmp_path / "c.npz", options)
    assert set(smoothable(prep.model, prep.layers)) == {"x", "c3"}
    smoothed = for_levels(prep, options, [Level(), parse("w8a8dyn")])
    assert set(smoothed.smoothing) == {"x"}
    assert [len(u.members) for u in units(smoothed, [0.5])] == [4]
    assert for_levels(prep, options, [Level(), parse("w8")]) is prep
    assert for_levels(prep, Options(smooth="off"), [Level(), parse("w8a8dyn")]) is prep
