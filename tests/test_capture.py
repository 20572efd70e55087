import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run

from onnxobc.calib.capture import capture_hessians
from onnxobc.calib.feeds import load_calibration
from onnxobc.graph.layers import discover, weight_array

F = TensorProto.FLOAT


def small_net(seed=0):
    """Conv (grouped, padded) → Relu → Flatten → Gemm → Relu → MatMul, and the MatMul weight
    used a second time on another branch (a shared layer)."""
    rng = np.random.default_rng(seed)
    w = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, name)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], name="conv", group=2, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wg", "bg"], ["g"], name="gemm", transB=1),
        helper.make_node("Relu", ["g"], ["h"]),
        helper.make_node("MatMul", ["h", "Wm"], ["y"], name="mm1"),
        helper.make_node("Sigmoid", ["h"], ["h2"]),
        helper.make_node("MatMul", ["h2", "Wm"], ["z"], name="mm2"),
    ]
    inits = [w("Wc", 8, 4, 3, 3), w("bc", 8), w("Wg", 12, 72), w("bg", 12), w("Wm", 12, 5)]
    vi = lambda n, s: helper.make_tensor_value_info(n, F, s)  # noqa: E731
    return make_model(nodes, [vi("x", ["n", 8, 6, 6])], [vi("y", ["n", 5]), vi("z", ["n", 5])], inits)


def with_outputs(model, names, weight=None, delta=None):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(onnx.ValueInfoProto(name=n))
    if weight is not None:
        for t in m.graph.initializer:
            if t.name == weight:
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) + delta, weight))
    return m


def test_hessians_match_onnxruntime_output_changes():
    model = small_net()
    layers, skipped = discover(model)
    assert not skipped and {l.weight: len(l.nodes) for l in layers} == {"Wc": 1, "Wg": 1, "Wm": 2}
    x = np.random.default_rng(1).standard_normal((7, 8, 6, 6)).astype(np.float32)
    H, _ = capture_hessians(model, layers, {"x": x}, batch_size=3)
    rng = np.random.default_rng(2)
    for layer in layers:
        w = weight_array(model, layer.weight)
        delta = rng.standard_normal(w.shape).astype(np.float32) * 0.01
        outs = [n.output[0] for n in model.graph.node if (n.name or n.output[0]) in layer.nodes]
        base = run(with_outputs(model, outs), {"x": x})[-len(outs):]
        moved = run(with_outputs(model, outs, layer.weight, delta), {"x": x})[-len(outs):]
        change = sum(float(np.sum((b.astype(np.float64) - m) ** 2)) for b, m in zip(base, moved))
        D = [d.astype(np.float64) for d in layer.matrices(delta)]
        predicted = sum(acc.samples * np.einsum("ij,jk,ik->", d, acc.hessian, d) / 2
                        for acc, d in zip(H[layer.weight], D))
        assert change == pytest.approx(predicted, rel=1e-3), layer.weight
    assert [acc.samples for acc in H["Wc"]] == [7 * 9, 7 * 9]  # 3×3 output positions per sample
    assert H["Wm"][0].samples == 14  # both users


def test_batch_split_does_not_change_hessians():
    model = small_net()
    layers, _ = discover(model)
    x = np.random.default_rng(3).standard_normal((5, 8, 6, 6)).astype(np.float32)
    a, _ = capture_hessians(model, layers, {"x": x}, batch_size=1)
    b, _ = capture_hessians(model, layers, {"x": x}, batch_size=5)
    for k in a:
        for p, q in zip(a[k], b[k]):
            np.testing.assert_allclose(p.hessian, q.hessian, rtol=1e-6, atol=1e-9)


def test_calibration_sources_and_validation(tmp_path):
    model = small_net()
    x = np.random.default_rng(4).standard_normal((6, 8, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x[:4])
    folder = tmp_path / "parts"
    folder.mkdir()
    np.savez(folder / "0.npz", x=x[:2])
    np.savez(folder / "1.npz", x=x[2:])
    assert load_calibration(tmp_path / "a.npz", model)["x"].shape == (4, 8, 6, 6)
    np.testing.assert_array_equal(load_calibration(folder, model)["x"], x)

    class Reader:  # the onnxruntime CalibrationDataReader protocol
        def __init__(self):
            self.feeds = iter([{"x": x[:3]}, {"x": x[3:]}])

        def get_next(self):
            return next(self.feeds, None)

    np.testing.assert_array_equal(load_calibration(Reader(), model)["x"], x)
    with pytest.warns(UserWarning, match="random"):
        assert load_calibration("random", model, samples=3)["x"].shape == (3, 8, 6, 6)

    bad = {"names.npz": dict(y=x), "dtype.npz": dict(x=x.astype(np.float64)), "rank.npz": dict(x=x[:, 0]),
           "shape.npz": dict(x=x[:, :, :5]), "nan.npz": dict(x=np.where(x > 1, np.nan, x).astype(np.float32))}
    messages = {"names.npz": "missing \\['x'\\]", "dtype.npz": "float64, the model takes float32",
                "rank.npz": "rank 4", "shape.npz": "axis 2 must be 6", "nan.npz": "NaN or Inf"}
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=messages[name]):
            load_calibration(tmp_path / name, model)
    (tmp_path / "pickled").mkdir()
    np.savez(tmp_path / "pickled" / "p.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects, which are never loaded"):
        load_calibration(tmp_path / "pickled", model)
    with pytest.raises(ValueError, match="no such calibration"):
        load_calibration(tmp_path / "none.npz", model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_calibration(tmp_path / "a.npz", model)  # real data: no warning


def test_a_batch_axis_declared_minus_one_is_dynamic():
    """Paddle exports (PP-OCR's direction classifier) declare a dynamic batch axis as -1."""
    from onnxobc.calib.feeds import batches, model_inputs

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    spec = model_inputs(model)
    assert spec["x"][1] == [None, 3]
    feeds = list(batches({"x": np.zeros((10, 3), np.float32)}, spec, 4))
    assert [len(f["x"]) for f in feeds] == [4, 4, 2]


def _masked_model():
    """x (batch, tokens, 6) → MatMul W → times the attention mask: a padded token's output is
    masked out, as mean pooling over real tokens does."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
             helper.make_node("Mul", ["h", "m3"], ["y"])]
    axis = numpy_helper.from_array(np.array([-1], np.int64), "axis")
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 6]),
                              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", 4])], [w, axis])


def test_padded_tokens_are_left_out_of_the_hessians():
    """H = 2/N Σ x xᵀ over the real tokens only (attention_mask 1), whatever the batches."""
    rng = np.random.default_rng(4)
    model = _masked_model()
    x = rng.standard_normal((10, 5, 6)).astype(np.float32)
    mask = np.ones((10, 5), np.int64)
    for i, n in enumerate([5, 3, 1, 4, 2, 5, 5, 2, 3, 1]):
        mask[i, n:] = 0
        x[i, n:] = 100.0  # padding that would dominate the Hessian
    layers, _ = discover(model)
    real = x[mask != 0]
    want = 2.0 / len(real) * real.astype(np.float64).T @ real
    for batch in (1, 3, 10):
        hessians, _ = capture_hessians(model, layers, {"x": x, "attention_mask": mask}, batch)
        np.testing.assert_allclose(hessians["W"][0].hessian, want, rtol=1e-6)
        assert hessians["W"][0].samples == len(real)
    # a model without the mask input: every token counts
    plain = make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 6])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", 4])], [model.graph.initializer[0]])
    hessians, _ = capture_hessians(plain, discover(plain)[0], {"x": x}, 4)
    assert hessians["W"][0].samples == x.shape[0] * x.shape[1]
