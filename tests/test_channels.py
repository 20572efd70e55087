"""Structured removal (channels.py, graph/slicing.py) on each coupling pattern: the sliced model
computes exactly what the original computes with the consumers' new weights written at full width
(zeros in the removed columns), nothing removed changes nothing, and the CLI's --channels runs end
to end on the shipped model with its accuracy kept."""

import json
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import gelu, make_model, run
from test_compress import onnxobc

from onnxobc.channels import plan_cut, removable_groups, removed_count
from onnxobc.graph.bias import add_output_shift
from onnxobc.graph.layers import discover
from onnxobc.graph.smooth import SUFFIX, smooth, smoothable
from onnxobc.graph.slicing import set_weight
from onnxobc.options import Options
from onnxobc.prepare import prepare
from onnxobc.recut import remove_channels

OFF = Options(sequential="off")  # the cuts as solved on the dense model's inputs

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def arr(name, *shape, seed=0, scale=0.3):
    return numpy_helper.from_array((scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32),
                                   name)


def conv(name, x, w, y, k=3, group=1, bias=None):
    return helper.make_node("Conv", [x, w] + ([bias] if bias else []), [y], name=name, kernel_shape=[k, k],
                            pads=[k // 2] * 4, group=group)


def conv_bn_relu_conv():
    c = 24
    bn = [arr("bn.s", c, seed=1), arr("bn.b", c, seed=2), arr("bn.m", c, seed=3),
          numpy_helper.from_array(np.ones(c, np.float32), "bn.v")]
    nodes = [conv("c1", "x", "w1", "a", bias="b1"),
             helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), conv("c2", "r", "w2", "y", bias="b2")]
    inits = [arr("w1", c, 4, 3, 3), arr("b1", c), *bn, arr("w2", 5, c, 3, 3, seed=4), arr("b2", 5)]
    return make_model(nodes, [vi("x", ["n", 4, 8, 8])], [vi("y", ["n", 5, 8, 8])], inits), (4, 8, 8)


def mlp_gelu():
    k = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h"], name="fc1.bias"),
             *gelu("h", "g"),
             helper.make_node("MatMul", ["g", "w2"], ["m"], name="fc2"),
             helper.make_node("Add", ["m", "b2"], ["z"], name="fc2.bias"),
             helper.make_node("Relu", ["z"], ["zr"], name="relu"),
             helper.make_node("MatMul", ["zr", "w3"], ["y"], name="fc3")]
    return make_model(nodes, [vi("x", ["n", 3, 8])], [vi("y", ["n", 3, 6])],
                      [arr("w1", 8, 32), arr("b1", 32), k("sqrt2", 1.4142135), k("one", 1.0), k("half", 0.5),
                       arr("w2", 32, 24, seed=1), arr("b2", 24, seed=2), arr("w3", 24, 6, seed=3)]), (3, 8)


def mobilenet_block():
    clip = lambda i, o, n: helper.make_node("Clip", [i, "lo", "hi"], [o], name=n)  # noqa: E731
    nodes = [conv("expand", "x", "we", "e", k=1, bias="be"), clip("e", "e6", "relu6a"),
             conv("dw", "e6", "wd", "d", k=3, group=32, bias="bd"), clip("d", "d6", "relu6b"),
             conv("project", "d6", "wp", "p", k=1), helper.make_node("Add", ["p", "x"], ["y"], name="skip")]
    return make_model(nodes, [vi("x", ["n", 4, 6, 6])], [vi("y", ["n", 4, 6, 6])],
                      [arr("we", 32, 4, 1, 1), arr("be", 32), arr("wd", 32, 1, 3, 3, seed=1), arr("bd", 32, seed=2),
                       arr("wp", 4, 32, 1, 1, seed=3), numpy_helper.from_array(np.array(0, np.float32), "lo"),
                       numpy_helper.from_array(np.array(6, np.float32), "hi")]), (4, 6, 6)


def se_block():
    """An expand / depthwise / squeeze-excitation / project block as Paddle2ONNX writes MobileNetV3's
    (each SE Conv's bias added through Reshape(bias, [1, C, 1, 1])): the gate's Conv makes a row per
    expanded channel, so its rows go with them."""
    shape = lambda name, c: numpy_helper.from_array(np.array([1, c, 1, 1], np.int64), name)  # noqa: E731
    nodes = [conv("expand", "x", "we", "e", k=1, bias="be"), helper.make_node("Relu", ["e"], ["er"], name="relu_e"),
             conv("dw", "er", "wd", "d", k=3, group=16, bias="bd"),
             helper.make_node("Relu", ["d"], ["dr"], name="relu_d"),
             helper.make_node("GlobalAveragePool", ["dr"], ["pool"], name="pool"),
             conv("se1", "pool", "w1", "s1", k=1), helper.make_node("Reshape", ["b1", "c4"], ["rb1"], name="rb1"),
             helper.make_node("Add", ["s1", "rb1"], ["s1b"], name="se1.bias"),
             helper.make_node("Relu", ["s1b"], ["s1r"], name="relu_s"),
             conv("se2", "s1r", "w2", "s2", k=1), helper.make_node("Reshape", ["b2", "c16"], ["rb2"], name="rb2"),
             helper.make_node("Add", ["s2", "rb2"], ["s2b"], name="se2.bias"),
             helper.make_node("HardSigmoid", ["s2b"], ["gate"], name="gate", alpha=1 / 6),
             helper.make_node("Mul", ["dr", "gate"], ["m"], name="excite"),
             conv("project", "m", "wp", "p", k=1), helper.make_node("Add", ["p", "x"], ["y"], name="skip")]
    return make_model(nodes, [vi("x", ["n", 4, 6, 6])], [vi("y", ["n", 4, 6, 6])],
                      [arr("we", 16, 4, 1, 1), arr("be", 16), arr("wd", 16, 1, 3, 3, seed=1), arr("bd", 16, seed=2),
                       arr("w1", 4, 16, 1, 1, seed=3, scale=1.0), arr("b1", 4, seed=4), shape("c4", 4),
                       arr("w2", 16, 4, 1, 1, seed=5, scale=1.0), arr("b2", 16, seed=6), shape("c16", 16),
                       arr("wp", 4, 16, 1, 1, seed=7)]), (4, 6, 6)


def gated():
    """a · Sigmoid(b), a and b Convs of the input (a gated linear unit), then a Conv: b's rows go with a's."""
    nodes = [conv("a", "x", "wa", "ya", k=1, bias="ba"), conv("b", "x", "wb", "yb", k=1, bias="bb"),
             helper.make_node("Sigmoid", ["yb"], ["s"], name="sig"),
             helper.make_node("Mul", ["ya", "s"], ["m"], name="glu"),
             conv("out", "m", "wo", "y", k=3)]
    return make_model(nodes, [vi("x", ["n", 4, 6, 6])], [vi("y", ["n", 3, 6, 6])],
                      [arr("wa", 16, 4, 1, 1), arr("ba", 16), arr("wb", 16, 4, 1, 1, seed=1), arr("bb", 16, seed=2),
                       arr("wo", 3, 16, 3, 3, seed=3)]), (4, 6, 6)


def flatten_gemm():
    nodes = [conv("c1", "x", "w1", "a", bias="b1"), helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [vi("x", ["n", 3, 2, 2])], [vi("y", ["n", 7])],
                      [arr("w1", 20, 3, 3, 3), arr("b1", 20), arr("wf", 7, 80, seed=1), arr("bf", 7)]), (3, 2, 2)


def attention():
    """One self-attention block as torch.onnx writes it: 4 heads of 4, Q/K/V split by one shared
    shape constant, merged back, the output projection, a residual."""
    k = lambda name, v, t=np.float32: numpy_helper.from_array(np.array(v, t), name)  # noqa: E731
    nodes = []
    for t in ("q", "k", "v"):
        nodes += [helper.make_node("MatMul", ["x", f"w{t}"], [f"{t}0"], name=f"{t}.matmul"),
                  helper.make_node("Add", [f"{t}0", f"b{t}"], [f"{t}1"], name=f"{t}.bias"),
                  helper.make_node("Reshape", [f"{t}1", "split"], [f"{t}2"], name=f"{t}.heads"),
                  helper.make_node("Transpose", [f"{t}2"], [f"{t}3"], name=f"{t}.t",
                                   perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3])]
    nodes += [helper.make_node("MatMul", ["q3", "k3"], ["s"], name="qk"),
              helper.make_node("Div", ["s", "sqrt_d"], ["s2"], name="scale"),
              helper.make_node("Softmax", ["s2"], ["a"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["a", "v3"], ["c"], name="ctx"),
              helper.make_node("Transpose", ["c"], ["c2"], name="ctx.t", perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["c2", "merge"], ["c3"], name="merge"),
              helper.make_node("MatMul", ["c3", "wo"], ["o0"], name="o.matmul"),
              helper.make_node("Add", ["o0", "bo"], ["o1"], name="o.bias"),
              helper.make_node("Add", ["o1", "x"], ["y"], name="residual")]
    inits = [arr(f"w{t}", 16, 16, seed=i) for i, t in enumerate("qkv")] + [arr(f"b{t}", 16, seed=9) for t in "qkv"]
    inits += [arr("wo", 16, 16, seed=5), arr("bo", 16, seed=6), k("split", [0, 0, 4, 4], np.int64),
              k("merge", [0, 0, 16], np.int64), k("sqrt_d", 2.0)]
    return make_model(nodes, [vi("x", ["n", 6, 16])], [vi("y", ["n", 6, 16])], inits), (6, 16)


def attention_with_biases():
    """attention() whose scores also meet, before the Softmax, a relative position bias with a
    value per head (MPNet's, T5's) and a mask that broadcasts over the heads (BERT's)."""
    model, shape = attention()
    g = model.graph
    softmax = next(n for n in g.node if n.name == "softmax")
    softmax.input[0] = "s4"
    at = list(g.node).index(softmax)
    g.node.insert(at, helper.make_node("Add", ["s2", "rel"], ["s3"], name="relative_bias"))
    g.node.insert(at + 1, helper.make_node("Add", ["s3", "mask"], ["s4"], name="mask_bias"))
    rng = np.random.default_rng(11)
    g.initializer.extend([numpy_helper.from_array(rng.standard_normal((1, 4, 6, 6)).astype(np.float32), "rel"),
                          numpy_helper.from_array(np.array([0, 0, 0, 0, -1e4, -1e4], np.float32).reshape(1, 1, 1, 6),
                                                  "mask")])
    return model, shape


def mlp_gelu_smoothed():
    """mlp_gelu() with the hidden activations divided per channel before fc2 and fc3 (graph/smooth.py,
    as a budget with int8 activations writes it): the division is sliced with the channels."""
    model, shape = mlp_gelu()
    layers, _ = discover(model)
    readers = smoothable(model, layers)
    rng = np.random.default_rng(5)
    smooth(model, readers, {t: rng.uniform(0.3, 3, ls[0].cols).astype(np.float32) for t, ls in readers.items()})
    assert {n.op_type for n in model.graph.node if n.output[0].endswith(SUFFIX)} == {"Mul"} and len(readers) == 3
    return model, shape


PATTERNS = {"conv-bn-relu-conv": conv_bn_relu_conv, "mlp-gelu": mlp_gelu, "mlp-gelu-smoothed": mlp_gelu_smoothed,
            "mobilenet": mobilenet_block, "se-block": se_block, "gated": gated,
            "flatten-gemm": flatten_gemm, "attention": attention, "attention-biases": attention_with_biases}


def prepared(tmp_path, make):
    model, shape = make()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((40,) + shape).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    return prepare(path, str(tmp_path / "c.npz"), Options(channels=0.5)), x


def widened(layer, narrow, keep, per):
    """A consumer's narrow weight back at full width, zeros in the removed channels' columns."""
    small = layer.kind.with_inputs(layer, len(keep), per)
    (view,) = small.matrices(narrow)
    full = np.zeros((layer.rows, layer.cols), np.float32)
    full[:, np.sort(layer.kind.input_columns(layer, per)[keep].ravel())] = view
    return layer.weight_from([full])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_sliced_model_computes_what_the_masked_one_does(tmp_path, pattern):
    prep, x = prepared(tmp_path, PATTERNS[pattern])
    small, rows, notes = remove_channels(prep, 0.5, OFF)
    onnx.checker.check_model(small)
    layers = {l.weight: l for l in prep.layers}
    masked = onnx.ModelProto()
    masked.CopyFrom(prep.model)
    cuts = [plan_cut(prep, g, 0.5, 0.01) for g in removable_groups(prep.model, prep.layers) if not g.blocked]
    assert cuts and all(c is not None for c in cuts)
    for cut in cuts:
        for name, narrow in cut.weights.items():
            per = next(c.per for c in cut.group.consumers if c.weight == name)
            set_weight(masked, name, widened(layers[name], narrow, cut.keep, per))
    for cut in cuts:
        for name, shift in cut.shifts.items():
            add_output_shift(masked, layers[name], shift)
    feed = {"x": x[:8]}
    np.testing.assert_allclose(run(small, feed)[0], run(masked, feed)[0], rtol=1e-4, atol=1e-4)
    assert len(small.SerializeToString()) < len(prep.model.SerializeToString())
    assert rows and all(r["applied"] for r in rows)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_keeping_every_channel_changes_nothing(tmp_path, pattern):
    prep, x = prepared(tmp_path, PATTERNS[pattern])
    layers = {l.weight: l for l in prep.layers}
    model = onnx.ModelProto()
    model.CopyFrom(prep.model)
    for g in removable_groups(prep.model, prep.layers):
        if not g.blocked:
            g.cut(model, layers, np.arange(g.channels))
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model, {"x": x[:8]})[0], run(prep.model, {"x": x[:8]})[0], rtol=1e-6, atol=1e-6)


def test_the_notes_name_the_channels_kept_and_not_those_cut_with_another_group(tmp_path):
    prep, _ = prepared(tmp_path, se_block)
    small, _, notes = remove_channels(prep, 0.5, OFF)
    shapes = {t.name: tuple(t.dims) for t in small.graph.initializer}
    assert shapes["wd"][0] == 8 and shapes["w2"][:2] == (8, 2)  # the depthwise and the gate's Conv cut with "we"
    assert [n.split(":")[0] for n in notes] == ["channels of wp kept"]  # the residual


def test_removed_counts_keep_multiples_of_eight():
    assert removed_count(64, 0.3) == 64 - 48  # 44.8 kept → 48
    assert removed_count(24, 0.5) == 24 - 16  # 12 kept → 16
    assert removed_count(10, 0.3) == 3  # too few channels to align
    assert removed_count(16, 0.99) == 8  # at least one block of 8 stays
    assert removed_count(3, 0.99) == 2  # at least one channel stays


def test_channels_on_the_shipped_model(tmp_path):
    out = tmp_path / "c.onnx"
    r = onnxobc("compress", str(DIGITS / "mlp.onnx"), str(out), "--calib", str(DIGITS / "calib.npz"), "--channels",
                "0.5", "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["bytes"]["output"] < 0.5 * rep["bytes"]["input"]
    assert "channels of fc2.weight kept: the graph output 'logits' reads it" in rep["notes"]
    import onnxruntime as ort

    test = np.load(DIGITS / "test.npz")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert np.mean(sess.run(None, {"x": test["x"]})[0].argmax(1) == test["label"]) >= 0.97  # dense: 0.989
    shapes = {t.name: tuple(t.dims) for t in onnx.load(out).graph.initializer}
    assert shapes["fc0.weight"][0] == 64 and shapes["fc1.weight"] == (32, 64)  # 128 → 64 and 64 → 32 neurons
    r = onnxobc("compress", str(DIGITS / "mlp.onnx"), str(tmp_path / "q.onnx"), "--calib", str(DIGITS / "calib.npz"),
                "--channels", "0.5", "--wbits", "8")
    assert r.returncode == 0 and "int8" in r.stdout, r.stderr


def test_bias_correction_keeps_the_consumers_output_mean(tmp_path):
    """The consumer's output, averaged over the calibration samples, is the dense model's: the
    removed channels' mean contribution (W − Ŵ)·E[x] went into its bias."""
    prep, _ = prepared(tmp_path, conv_bn_relu_conv)
    small, _, _ = remove_channels(prep, 0.5, OFF)
    calib = {"x": prep.calib["x"]}
    dense, cut = run(prep.model, calib)[0], run(small, calib)[0]
    np.testing.assert_allclose(cut.mean(axis=(0, 2, 3)), dense.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    uncorrected, _, _ = remove_channels(prep, 0.5, Options(sequential="off", bias_correction=False))
    assert np.abs(run(uncorrected, calib)[0].mean(axis=(0, 2, 3)) - dense.mean(axis=(0, 2, 3))).max() > 1e-3


def test_heads_go_from_every_projection_and_shape(tmp_path):
    prep, x = prepared(tmp_path, attention)
    small, rows, _ = remove_channels(prep, 0.5, OFF)
    shapes = {t.name: numpy_helper.to_array(t) for t in small.graph.initializer}
    assert all(shapes[f"w{t}"].shape == (16, 8) and shapes[f"b{t}"].shape == (8,) for t in "qkv")
    assert shapes["wo"].shape == (8, 16)
    assert {tuple(v) for k, v in shapes.items() if k.startswith("split")} == {(0, 0, 2, 4)}
    assert [tuple(v) for k, v in shapes.items() if k.startswith("merge")] == [(0, 0, 8)]
    assert any("2 of 4 heads kept" in r["note"] for r in rows)
