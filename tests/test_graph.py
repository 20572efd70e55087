import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import conv_model, make_model

from onnxobc.graph.layers import discover, weight_array
from onnxobc.graph.model import load_model

F = TensorProto.FLOAT


def vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def arr(name, *shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def test_views_round_trip_and_orientation():
    rng = np.random.default_rng(0)
    model = make_model(
        [helper.make_node("Gemm", ["x", "Wt"], ["a"], name="g_t", transB=1, alpha=0.5),
         helper.make_node("Gemm", ["a", "Wn"], ["b"], name="g_n"),
         helper.make_node("MatMul", ["b", "Wm"], ["y"], name="mm")],
        [vi("x", ["n", 8])], [vi("y", ["r", "c"])], [arr("Wt", 6, 8), arr("Wn", 6, 5), arr("Wm", 5, 3)])
    layers, skipped = discover(model)
    assert not skipped
    shapes = {l.weight: (l.op, l.rows, l.cols) for l in layers}
    assert shapes == {"Wt": ("Gemm", 6, 8), "Wn": ("Gemm", 5, 6), "Wm": ("MatMul", 3, 5)}
    x = rng.standard_normal((4, 8)).astype(np.float32)
    for layer in layers:
        w = weight_array(model, layer.weight)
        (m,) = layer.matrices(w)
        np.testing.assert_array_equal(layer.weight_from([m]), w)
        # Y = X Mᵀ is what the node computes (up to alpha)
        xin = rng.standard_normal((4, layer.cols)).astype(np.float32)
        ref = xin @ (w.T if layer.attrs[0].get("transB") else w)
        np.testing.assert_allclose(xin @ m.T, ref, rtol=1e-6)
    del x


def test_conv_view_column_order_and_round_trip():
    model, W = conv_model(4, 6, (3, 2), group=2)
    (layer,), _ = discover(model)
    mats = layer.matrices(W)
    assert [m.shape for m in mats] == [(3, 12), (3, 12)]
    # columns run over (kh, kw, C_in/g): the input channel is fastest
    np.testing.assert_array_equal(mats[1][2, :2], [W[5, 0, 0, 0], W[5, 1, 0, 0]])
    np.testing.assert_array_equal(layer.weight_from(mats), W)


def test_shared_weight_is_one_layer_and_skips_have_reasons():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["a"], name="use1"),
        helper.make_node("Relu", ["x"], ["a2"]),
        helper.make_node("MatMul", ["a2", "W"], ["b"], name="use2"),
        helper.make_node("MatMul", ["a", "a2"], ["c"], name="act_act"),
        helper.make_node("MatMul", ["K", "xt"], ["d"], name="left"),
        helper.make_node("MatMul", ["x", "W3"], ["e"], name="batched"),
        helper.make_node("Gemm", ["x", "Wi"], ["f"], name="from_input"),
        helper.make_node("Gemm", ["x", "W16"], ["g"], name="half"),
    ]
    inits = [arr("W", 4, 4), arr("K", 3, 4), arr("W3", 2, 4, 4),
             numpy_helper.from_array(np.ones((4, 2), np.float16), "W16")]
    model = make_model(nodes, [vi("x", [2, 4]), vi("x2", [4, 4]), vi("xt", [4, 2]), vi("Wi", [4, 4])],
                       [vi(o, ["r", "c"]) for o in "bcdfg"] + [vi("e", ["b", "r", "c"])], inits)
    layers, skipped = discover(model)
    assert [(l.weight, l.nodes) for l in layers] == [("W", ["use1", "use2"])]
    reasons = {s.name: s.reason for s in skipped}
    assert "computed in the graph" in reasons["act_act"]
    assert "left" in reasons["left"]
    assert "rank 3" in reasons["batched"]
    assert "graph input" in reasons["from_input"]
    assert "float16" in reasons["half"]


def test_load_constant_nodes_become_initializers(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    const = helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W"))
    model = make_model([const, helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 4])],
                       [vi("y", ["r", "c"])])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    loaded = load_model(path)
    assert [n.op_type for n in loaded.graph.node] == ["MatMul"]
    (layer,), _ = discover(loaded)
    np.testing.assert_array_equal(weight_array(loaded, layer.weight), w)


def test_load_external_data(tmp_path):
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 64])],
                       [vi("y", ["r", "c"])], [arr("W", 64, 64)])
    w = numpy_helper.to_array(model.graph.initializer[0])
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    np.testing.assert_array_equal(weight_array(load_model(path), "W"), w)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"not a model at all \x00\xff", "not a readable"),
                                           (None, "no such file")])
def test_load_errors(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_model(path)


def test_truncated_model_is_refused(tmp_path):
    model, _ = conv_model(3, 4, (3, 3))
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(path.name)):
        load_model(path)


def test_opset_upgrade_preserves_everything_else():
    import pathlib

    import onnxruntime as ort

    from onnxobc.graph.qdq import ensure_opset, opset

    digits = pathlib.Path(__file__).parents[1] / "models" / "digits"
    m = onnx.load(digits / "mlp.onnx")
    m.doc_string, m.producer_name, m.model_version = "doc", "maker", 7
    helper.set_model_props(m, {"author": "someone"})
    m.graph.node[0].doc_string = "first layer"
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    up = ensure_opset(m, 21)
    assert opset(up) == 21 and up.ir_version >= 10 and ("ai.onnx.ml", 3) in [(o.domain, o.version) for o in up.opset_import]
    assert (up.doc_string, up.producer_name, up.model_version) == ("doc", "maker", 7)
    assert [(p.key, p.value) for p in up.metadata_props] == [("author", "someone")]
    assert [n.name for n in up.graph.node] == [n.name for n in m.graph.node] and up.graph.node[0].doc_string == "first layer"
    assert [o.name for o in up.graph.output] == [o.name for o in m.graph.output] and up.graph.name == m.graph.name
    x = np.load(digits / "test.npz")["x"][:16]
    run = lambda model: ort.InferenceSession(model.SerializeToString(),  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(run(up), run(m), rtol=1e-6, atol=1e-6)
    assert ensure_opset(m, 13) is m  # already new enough: untouched
