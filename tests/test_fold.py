"""Folding per-channel affine steps after a Conv/Gemm: same outputs through onnxruntime, nodes gone,
and what must not fold stays."""

import copy

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run


def _any(name, rank):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])

from onnxobc.graph.fold import fold_output_affine


def _chain(head, steps, shape_y, inits, x_shape, extra_outputs=()):
    nodes, prev = [head], head.output[0]
    for k, (op, const, first) in enumerate(steps):
        name = f"c{k}"
        inits.append(numpy_helper.from_array(np.asarray(const, np.float32), name))
        out = f"t{k}"
        nodes.append(helper.make_node(op, [prev, name] if first else [name, prev], [out], name=f"step{k}"))
        prev = out
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    rank = max([len(x_shape)] + [np.ndim(c) for _, c, _ in steps])
    outs = [_any("y", rank)]
    outs += [_any(o, len(x_shape)) for o in extra_outputs]
    return make_model(nodes, [x], outs, inits)


def _check(model, x, expect_removed):
    before = run(model, {"x": x})
    folded = copy.deepcopy(model)
    assert fold_output_affine(folded) == expect_removed
    assert len(folded.graph.node) == len(model.graph.node) - expect_removed
    after = run(folded, {"x": x})
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    return folded


@pytest.mark.parametrize("bias", [True, False])
def test_conv_scale_shift_chain_folds(bias):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")]
    ins = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"))
        ins.append("b")
    conv = helper.make_node("Conv", ins, ["z"], name="conv", pads=[1, 1, 1, 1])
    steps = [("Mul", [0.7], False), ("Add", rng.standard_normal((4, 1, 1)), True),
             ("Sub", rng.standard_normal((1, 4, 1, 1)), True), ("Div", [[[2.0]], [[4.0]], [[-1.0]], [[0.5]]], True)]
    model = _chain(conv, steps, None, inits, [2, 3, 6, 6])
    folded = _check(model, rng.standard_normal((2, 3, 6, 6)).astype(np.float32), 4)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Identity"]
    assert sorted(t.name for t in folded.graph.initializer) == ["W", "b" if bias else "conv.folded_bias"]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_with_alpha_beta_folds(trans_b):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 6) if trans_b else (6, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")]
    gemm = helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="gemm", alpha=0.5, beta=2.0, transB=trans_b)
    model = _chain(gemm, [("Mul", rng.standard_normal(5), True), ("Add", rng.standard_normal((1, 5)), False)],
                   None, inits, [3, 6])
    folded = _check(model, rng.standard_normal((3, 6)).astype(np.float32), 2)
    attrs = {a.name: a.f for a in folded.graph.node[0].attribute if a.name in ("alpha", "beta")}
    assert attrs == {"alpha": 1.0, "beta": 1.0}


def test_what_must_not_fold_stays():
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "W")]
    conv = helper.make_node("Conv", ["x", "W"], ["z"], name="conv")
    # varies along a spatial axis, grows the rank, divides the constant by the output, reads a graph output
    for steps in ([("Mul", rng.standard_normal((1, 1, 5)), True)], [("Add", rng.standard_normal((1, 1, 4, 1, 1)), True)],
                  [("Div", [2.0], False)], [("Sub", [1.0], False)]):
        model = _chain(copy.deepcopy(conv), steps, None, copy.deepcopy(inits), [1, 3, 5, 5])
        _check(model, rng.standard_normal((1, 3, 5, 5)).astype(np.float32), 0)
    model = _chain(copy.deepcopy(conv), [("Mul", [2.0], True)], None, copy.deepcopy(inits), [1, 3, 5, 5],
                   extra_outputs=["z"])
    _check(model, rng.standard_normal((1, 3, 5, 5)).astype(np.float32), 0)


def test_shared_weight_does_not_fold():
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 3, 1, 1)).astype(np.float32), "W"),
             numpy_helper.from_array(np.float32(3.0), "k")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["a"], name="c1"), helper.make_node("Mul", ["a", "k"], ["b"]),
             helper.make_node("Conv", ["b", "W"], ["y"], name="c2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = _any("y", 4)
    model = make_model(nodes, [x], [y], inits)
    _check(model, rng.standard_normal((1, 3, 4, 4)).astype(np.float32), 0)


def test_load_reports_what_it_folded_and_promoted(tmp_path):
    """prepare.load keeps its count of folded nodes and its notes (a positional slip once put the
    notes in `folded`)."""
    import onnx

    from onnxobc.options import Options
    from onnxobc.prepare import load

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")]
    conv = helper.make_node("Conv", ["x", "W"], ["z"], name="conv", pads=[1, 1, 1, 1])
    model = _chain(conv, [("Mul", rng.standard_normal((4, 1, 1)), True)], None, inits, [2, 3, 6, 6])
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3, 3, 3]))
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((4, 3, 6, 6)).astype(np.float32))
    prep = load(tmp_path / "m.onnx", tmp_path / "c.npz", Options(wbits=8))
    assert prep.folded == 1
    assert prep.range_choices == {}
    assert len(prep.notes) == 1 and "also graph inputs" in prep.notes[0]


def _before_conv(steps, W, pads, group=1, bias=None, extra_output=None):
    """x → Relu → the constant `steps` ((op, value, value second)) → Conv(W, pads, group)."""
    inits = [numpy_helper.from_array(W.astype(np.float32), "W")]
    ins = ["x0", "W"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        ins.append("b")
    nodes, prev = [helper.make_node("Relu", ["x"], ["x0"])], "x0"
    for k, (op, const, second) in enumerate(steps):
        inits.append(numpy_helper.from_array(np.asarray(const, np.float32), f"c{k}"))
        nodes.append(helper.make_node(op, [prev, f"c{k}"] if second else [f"c{k}", prev], [f"t{k}"], name=f"s{k}"))
        prev = f"t{k}"
    conv = helper.make_node("Conv", [prev] + ins[1:], ["y"], name="conv", pads=pads, group=group)
    c = W.shape[1] * group
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 6, 6])
    outs = [_any("y", 4)] + ([_any(extra_output, 4)] if extra_output else [])
    return make_model(nodes + [conv], [x], outs, inits)


def _input_folded(model, expect_removed, x):
    from onnxobc.graph.fold import fold_input_affine

    before = run(model, {"x": x})
    folded = copy.deepcopy(model)
    assert fold_input_affine(folded) == expect_removed
    assert len(folded.graph.node) == len(model.graph.node) - expect_removed
    for a, b in zip(before, run(folded, {"x": x})):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    return folded


@pytest.mark.parametrize("group", [1, 2, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_an_affine_step_before_an_unpadded_conv_folds_whole(group, bias):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((4, 4 // group, 1, 1))
    steps = [("Mul", [0.7], True), ("Add", rng.standard_normal((4, 1, 1)), False),  # PP-OCRv4's x·a + b, per channel
             ("Div", [2.0], True), ("Sub", rng.standard_normal((1, 4, 1, 1)), True)]
    model = _before_conv(steps, W, [0, 0, 0, 0], group, rng.standard_normal(4) if bias else None)
    folded = _input_folded(model, 4, rng.standard_normal((2, 4, 6, 6)).astype(np.float32) * 3)
    assert [n.op_type for n in folded.graph.node] == ["Relu", "Conv"]


@pytest.mark.parametrize("group", [1, 4])
def test_before_a_padded_conv_the_scale_folds_and_one_add_stays(group):
    """The zeros a Conv pads with are not shifted: the scale folds (a·0 = 0), the shift stays as
    one Add of B/A before the Conv."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((4, 4 // group, 3, 3))
    steps = [("Mul", rng.uniform(0.5, 2, (4, 1, 1)), True), ("Add", [0.3], True)]
    folded = _input_folded(_before_conv(steps, W, [1, 1, 1, 1], group), 1,
                           rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    assert [n.op_type for n in folded.graph.node] == ["Relu", "Add", "Conv"]
    only_scale = _before_conv([("Mul", [1.5], False)], W, [1, 1, 1, 1], group)  # no shift: nothing stays
    assert [n.op_type for n in _input_folded(only_scale, 1, rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
            .graph.node] == ["Relu", "Conv"]


def test_what_must_not_fold_into_the_next_conv_stays():
    rng = np.random.default_rng(6)
    W, x = rng.standard_normal((4, 4, 1, 1)), rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    for steps, extra in (([("Sub", [1.0], False)], None),  # the constant minus the input
                         ([("Div", [2.0], False)], None),  # the constant over the input
                         ([("Mul", rng.standard_normal((1, 1, 6)), True)], None),  # varies along a spatial axis
                         ([("Mul", [2.0], True)], "t0")):  # the step's output is read elsewhere too
        _input_folded(_before_conv(steps, W, [0, 0, 0, 0], extra_output=extra), 0, x)
    padded_shift = _before_conv([("Add", [0.5], True)], rng.standard_normal((4, 4, 3, 3)), [1, 1, 1, 1])
    _input_folded(padded_shift, 0, x)  # a lone shift before a padded Conv: nothing to fold
