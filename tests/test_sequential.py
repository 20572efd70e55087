"""Sequential mode (sequential.py, the OBC paper's A.8): the refit is the least-squares map from the
compressed inputs to the dense outputs; on a two-layer model the second layer is solved on the
inputs the compressed first layer gives it, refitted by hand from the cross term; waves follow the
graph; and the CLI runs it end to end with a lower error than independent solves on the shipped
model at 3 bits."""

import json
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run
from test_channels import PATTERNS
from test_compress import onnxobc

from onnxobc import solver
from onnxobc.errors import OptionError
from onnxobc.graph.layers import discover
from onnxobc.graph.order import waves
from onnxobc.pipeline import Options, compress
from onnxobc.prepare import load
from onnxobc.solve import Problem, solve_layer

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"


def test_refit_is_the_least_squares_map_from_compressed_inputs_to_dense_outputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    X_tilde = X + 0.3 * rng.standard_normal((200, 6))
    W = rng.standard_normal((4, 6))
    H, C = solver.HessianAccumulator(6), solver.CrossAccumulator(6)
    for part in np.array_split(np.arange(200), 3):  # batches add up
        H.add_batch(X_tilde[part])
        C.add_batch(X_tilde[part], X[part])
    expected = np.linalg.lstsq(X_tilde, X @ W.T, rcond=None)[0].T
    np.testing.assert_allclose(solver.refit(W, H.hessian, C.cross, damp=0.0), expected, rtol=1e-8, atol=1e-10)
    H0, C0 = solver.HessianAccumulator(6), solver.CrossAccumulator(6)
    H0.add_batch(X)
    C0.add_batch(X, X)
    np.testing.assert_allclose(solver.refit(W, H0.hessian, C0.cross), W, atol=1e-12)  # the dense inputs: W back


def test_refit_with_bias_is_the_least_squares_map_with_a_free_intercept():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 5)) + rng.uniform(1, 3, 5)  # means far from zero
    X_tilde = 0.7 * X + 0.4 + 0.2 * rng.standard_normal((300, 5))
    W = rng.standard_normal((3, 5))
    H, C, H0 = solver.HessianAccumulator(5), solver.CrossAccumulator(5), solver.HessianAccumulator(5)
    H.add_batch(X_tilde)
    C.add_batch(X_tilde, X)
    H0.add_batch(X)
    fitted, shift = solver.refit_with_bias(W, H.hessian, H.mean, C.cross, H0.mean, damp=0.0)
    A = np.hstack([X_tilde, np.ones((300, 1))])
    coef = np.linalg.lstsq(A, X @ W.T, rcond=None)[0].T  # [W' | shift]
    np.testing.assert_allclose(fitted, coef[:, :5], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(shift, coef[:, 5], rtol=1e-7, atol=1e-9)
    plain = solver.refit(W, H.hessian, C.cross, damp=0.0)
    with_bias = np.linalg.norm(X_tilde @ fitted.T + shift - X @ W.T)
    assert with_bias < np.linalg.norm(X_tilde @ plain.T - X @ W.T)
    C0 = solver.CrossAccumulator(5)
    C0.add_batch(X, X)
    back, none = solver.refit_with_bias(W, H0.hessian, H0.mean, C0.cross, H0.mean)  # the dense inputs
    np.testing.assert_allclose(back, W, atol=1e-10)
    np.testing.assert_allclose(none, 0.0, atol=1e-10)


def two_layers(tmp_path):
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    w1, w2 = rng.standard_normal((8, 12)).astype(np.float32), rng.standard_normal((12, 5)).astype(np.float32)
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
                       [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(model, tmp_path / "m.onnx")
    x = rng.standard_normal((64, 8)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    return model, w1, w2, x


def test_the_second_layer_is_solved_on_the_first_ones_compressed_outputs(tmp_path):
    model, w1, w2, x = two_layers(tmp_path)
    # float forms (onnxruntime may run weight-only int8 with quantized activations) and no greedy order
    # that float32 rounding of the captured inputs could flip
    opt = Options(sparsity=0.5, sequential=True, bias_correction=False, holdout=0.25, method="magnitude")
    compress(tmp_path / "m.onnx", tmp_path / "o.onnx", str(tmp_path / "c.npz"), opt)
    fc1, fc2 = discover(model)[0]
    X = x[:48].astype(np.float64)  # the calibration part (a quarter held out)

    def solved(layer, W, X_in):
        acc = solver.HessianAccumulator(layer.cols)
        acc.add_batch(X_in)
        return solve_layer(Problem(layer, W, [acc], False), opt).weight, acc

    w1_hat, _ = solved(fc1, w1, X)  # the first wave sees the dense inputs: nothing to refit
    X2, X2_tilde = np.maximum(X @ w1, 0), np.maximum(X @ w1_hat.astype(np.float64), 0)
    H, C = solver.HessianAccumulator(12), solver.CrossAccumulator(12)
    H.add_batch(X2_tilde)
    C.add_batch(X2_tilde, X2)
    refitted = solver.refit(w2.T, H.hessian, C.cross, opt.damp).T.astype(np.float32)
    w2_hat, _ = solved(fc2, refitted, X2_tilde)
    expected = model.__deepcopy__()
    for t in expected.graph.initializer:
        t.CopyFrom(numpy_helper.from_array({"w1": w1_hat, "w2": w2_hat}[t.name].astype(np.float32), t.name))
    got = onnx.load(tmp_path / "o.onnx")
    np.testing.assert_allclose(run(got, {"x": x})[0], run(expected, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_waves_follow_the_graph(tmp_path):
    model, _ = PATTERNS["attention"]()
    layers, _ = discover(model)
    assert [sorted(l.weight for l in w) for w in waves(model, layers)] == [["wk", "wq", "wv"], ["wo"]]
    model, _ = PATTERNS["mobilenet"]()
    layers, _ = discover(model)
    assert [[l.weight for l in w] for w in waves(model, layers)] == [["we"], ["wd"], ["wp"]]


def test_sequential_beats_independent_on_the_shipped_model_at_three_bits_and_auto_keeps_it(tmp_path):
    errors, reports = {}, {}
    for name in ("off", "on", "auto"):
        r = onnxobc("compress", str(DIGITS / "mlp.onnx"), str(tmp_path / f"{name}.onnx"), "--calib",
                    str(DIGITS / "calib.npz"), "--wbits", "3", "--sequential", name, "--report", str(tmp_path / f"{name}.json"))
        assert r.returncode == 0, r.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        (errors[name],) = reports[name]["verification"]["relative_output_error"].values()
    assert errors["on"] < errors["off"]
    assert all("sequential" in row["note"] for row in reports["on"]["layers"])
    assert not any("sequential" in row["note"] for row in reports["off"]["layers"])
    # auto solved both ways, measured each on the held-out samples, and kept the better
    mode = reports["auto"]["solve_mode"]
    assert mode["chosen"] == "sequential"
    assert mode["held_out_error"] == pytest.approx({"independent": errors["off"], "sequential": errors["on"]}, rel=1e-6)
    assert errors["auto"] == pytest.approx(errors["on"], rel=1e-6)
    assert any("solved sequentially (sequential auto)" in n for n in reports["auto"]["notes"])
    assert "solve_mode" not in reports["on"] and "solve_mode" not in reports["off"]


def test_auto_tries_sequential_where_errors_compound():
    assert Options(wbits=8).solve_modes == ("independent",)
    assert Options(sparsity=0.5).solve_modes == ("independent",)
    assert Options(wbits=4).solve_modes == ("independent", "sequential")
    assert Options(wbits=8, abits=8).solve_modes == ("independent", "sequential")
    assert Options(wbits=8, abits="dynamic").solve_modes == ("independent",)
    assert Options(wbits=4, method="gptq").solve_modes == ("independent",)  # a baseline runs as published
    assert Options(wbits=8, sequential="on").solve_modes == ("sequential",)
    assert Options(wbits=4, sequential=False).solve_modes == ("independent",)
    with pytest.raises(OptionError, match="sequential"):
        Options(wbits=4, sequential="sometimes").check()


def test_sequential_is_for_fixed_levels_here(tmp_path):
    with pytest.raises(OptionError, match="budget"):
        Options(sequential=True).check(planned=True)
    r = onnxobc("compress", str(DIGITS / "mlp.onnx"), str(tmp_path / "o.onnx"), "--calib", str(DIGITS / "calib.npz"),
                "--speedup", "2x", "--sequential")
    assert r.returncode == 2 and "--sequential" in r.stderr and not (tmp_path / "o.onnx").exists()
    assert load(DIGITS / "mlp.onnx", str(DIGITS / "calib.npz"), Options()).layers  # the input untouched
