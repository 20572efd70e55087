"""Layer groups (graph/coupling.py): which layers read a producer's output channels, through
which channel-wise ops, and why a group is blocked; the consumers' columns of each channel checked
against the activations onnxruntime computes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import gelu, make_model

from onnxobc.graph.coupling import layer_groups
from onnxobc.graph.layers import discover


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def arr(name, *shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def groups(model):
    layers, _ = discover(model)
    return {g.producer: g for g in layer_groups(model, layers)}, {l.weight: l for l in layers}


def conv(name, x, w, y, k=3, group=1, bias=None):
    return helper.make_node("Conv", [x, w] + ([bias] if bias else []), [y], name=name, kernel_shape=[k, k],
                            pads=[k // 2] * 4, group=group)


def test_conv_bn_relu_conv():
    bn = [arr("bn.s", 6, seed=1), arr("bn.b", 6, seed=2), arr("bn.m", 6, seed=3),
          numpy_helper.from_array(np.ones(6, np.float32), "bn.v")]
    nodes = [conv("c1", "x", "w1", "a", bias="b1"),
             helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"), conv("c2", "r", "w2", "y")]
    m = make_model(nodes, [vi("x", [1, 4, 8, 8])], [vi("y", [1, 5, 8, 8])],
                   [arr("w1", 6, 4, 3, 3), arr("b1", 6), *bn, arr("w2", 5, 6, 3, 3)])
    g, layers = groups(m)
    assert g["w1"].blocked is None and g["w1"].channels == 6
    assert [c.weight for c in g["w1"].consumers] == ["w2"] and g["w1"].through == ["bn", "relu"]
    assert g["w2"].blocked == "the graph output 'y' reads it"
    cols = g["w1"].columns(layers["w2"])
    assert cols.shape == (6, 9) and sorted(cols.ravel()) == list(range(54))
    # the oracle: zeroing input channel c zeroes exactly its columns of the unfolded activation
    x = np.random.default_rng(0).standard_normal((2, 6, 8, 8)).astype(np.float32)
    full = layers["w2"].hessian_inputs(x)[0]
    for c in range(6):
        cut = x.copy()
        cut[:, c] = 0
        changed = np.flatnonzero(np.any(layers["w2"].hessian_inputs(cut)[0] != full, axis=0))
        assert set(changed) <= set(cols[c]) and not layers["w2"].hessian_inputs(cut)[0][:, cols[c]].any()


def test_mlp_with_gelu_and_bias_adds():
    """MatMul + bias Add → GELU as torch.onnx writes it (x · (erf(x/√2) + 1) · 0.5) → MatMul."""
    c = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h"], name="fc1.bias"),
             *gelu("h", "g"),
             helper.make_node("MatMul", ["g", "w2"], ["y0"], name="fc2"),
             helper.make_node("Add", ["y0", "x"], ["y"], name="residual")]
    m = make_model(nodes, [vi("x", [2, 3, 8])], [vi("y", [2, 3, 8])],
                   [arr("w1", 8, 16), arr("b1", 16), c("sqrt2", 1.4142135), c("one", 1.0), c("half", 0.5),
                    arr("w2", 16, 8)])
    g, layers = groups(m)
    assert g["w1"].blocked is None and [c.weight for c in g["w1"].consumers] == ["w2"]
    assert g["w1"].through == ["fc1.bias", "div", "erf", "add1", "mul", "half"]
    assert g["w1"].columns(layers["w2"]).tolist() == [[i] for i in range(16)]
    assert "'residual' also reads 'x'" in g["w2"].blocked


def test_mobilenet_expand_depthwise_project():
    clip = lambda i, o, n: helper.make_node("Clip", [i, "lo", "hi"], [o], name=n)  # noqa: E731
    nodes = [conv("expand", "x", "we", "e", k=1), clip("e", "e6", "relu6a"),
             conv("dw", "e6", "wd", "d", k=3, group=12), clip("d", "d6", "relu6b"),
             conv("project", "d6", "wp", "p", k=1), helper.make_node("Add", ["p", "x"], ["y"], name="skip")]
    m = make_model(nodes, [vi("x", [1, 4, 6, 6])], [vi("y", [1, 4, 6, 6])],
                   [arr("we", 12, 4, 1, 1), arr("wd", 12, 1, 3, 3), arr("wp", 4, 12, 1, 1),
                    numpy_helper.from_array(np.array(0, np.float32), "lo"),
                    numpy_helper.from_array(np.array(6, np.float32), "hi")])
    g, _ = groups(m)
    assert g["we"].blocked is None and g["we"].depthwise == ["wd"]
    assert [c.weight for c in g["we"].consumers] == ["wp"] and g["we"].through == ["relu6a", "relu6b"]
    assert "depthwise" in g["wd"].blocked
    assert "'skip' also reads 'x'" in g["wp"].blocked  # the residual: only slicing both branches alike would do


def test_flatten_spreads_each_channel_over_positions():
    nodes = [conv("c1", "x", "w1", "a"), helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    m = make_model(nodes, [vi("x", [2, 3, 2, 2])], [vi("y", [2, 7])], [arr("w1", 5, 3, 3, 3), arr("wf", 7, 20)])
    g, layers = groups(m)
    assert g["w1"].blocked is None and g["w1"].consumers[0].per == 4
    cols = g["w1"].columns(layers["wf"])
    assert cols.tolist() == [[4 * c + i for i in range(4)] for c in range(5)]
    # the oracle: the Gemm's input columns of channel c are that channel's positions
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    probe.graph.output.extend([onnx.ValueInfoProto(name="r"), onnx.ValueInfoProto(name="f")])
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2)).astype(np.float32)
    _, r, f = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for c in range(5):
        assert np.array_equal(f[:, cols[c]], r[:, c].reshape(2, -1))


@pytest.mark.parametrize("joiner", ["Concat", "Add", "Reshape", "Transpose"])
def test_what_blocks_a_group(joiner):
    nodes = [conv("c1", "x", "w1", "a", k=1), conv("c2", "x", "w2", "b", k=1)]
    inits = [arr("w1", 4, 3, 1, 1), arr("w2", 4, 3, 1, 1, seed=1), arr("w3", 2, 8, 1, 1)]
    if joiner == "Concat":
        nodes.append(helper.make_node("Concat", ["a", "b"], ["j"], name="join", axis=1))
    elif joiner == "Add":
        nodes += [helper.make_node("Add", ["a", "b"], ["j0"], name="join"),
                  helper.make_node("Concat", ["j0", "j0"], ["j"], name="dup", axis=1)]
    elif joiner == "Reshape":
        inits.append(numpy_helper.from_array(np.array([1, 8, 6, 3], np.int64), "shape"))
        nodes += [helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
                  helper.make_node("Reshape", ["c", "shape"], ["j"], name="join")]
    else:
        nodes += [helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
                  helper.make_node("Transpose", ["c"], ["j"], name="join", perm=[0, 1, 3, 2])]
    nodes.append(conv("c3", "j", "w3", "y", k=1))
    m = make_model(nodes, [vi("x", [1, 3, 6, 3 if joiner == "Transpose" else 6])],
                   [vi("y", [1, 2, 6 if joiner != "Transpose" else 3, 6 if joiner != "Transpose" else 6])], inits)
    g, _ = groups(m)
    assert g["w1"].blocked and ("'join'" in g["w1"].blocked or "'cat'" in g["w1"].blocked)
    assert not g["w1"].consumers or g["w1"].blocked


def test_shared_weight_and_grouped_producers_are_blocked():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="m1"),
             helper.make_node("MatMul", ["a", "w"], ["y"], name="m2")]
    m = make_model(nodes, [vi("x", [2, 4])], [vi("y", [2, 4])], [arr("w", 4, 4)])
    g, _ = groups(m)
    assert g["w"].blocked == "its weight is shared by several nodes"


def test_a_squeeze_excitation_gate_is_cut_with_the_channels_it_scales():
    from test_channels import se_block

    from onnxobc.graph.constants import fold_constants

    model, _ = se_block()
    assert fold_constants(model) == 2  # the SE Convs' biases, reshaped once rather than on every call
    g, _ = groups(model)
    e = g["we"]
    assert e.blocked is None and e.gates == ["w2"] and e.depthwise == ["wd"]
    assert [c.weight for c in e.consumers] == ["w1", "wp"]  # the squeeze reads the pooled channels
    assert e.members == ["we", "w2", "wd", "w1", "wp"]
    assert e.through == ["relu_e", "relu_d", "pool", "se2.bias", "gate", "excite"]
    assert "gate on the channels of 'we'" in g["w2"].blocked and not g["w2"].consumers
    assert g["w1"].blocked is None and [c.weight for c in g["w1"].consumers] == ["w2"]  # the squeezed channels
    assert list(e.rows_kept(np.arange(3))) == ["we", "w2"]


@pytest.mark.parametrize("case", ["gate read elsewhere", "one gate for every channel", "gate made from the channels"])
def test_what_a_gate_must_be(case):
    from test_channels import se_block

    model, _ = se_block()
    g = model.graph
    if case == "gate read elsewhere":
        g.output.append(vi("gate", ["n", 16, 1, 1]))
    elif case == "one gate for every channel":  # se2 makes one value, which the Mul broadcasts over the channels
        for t in g.initializer:
            if t.name in ("w2", "b2", "c16"):
                value = numpy_helper.to_array(t)
                t.CopyFrom(numpy_helper.from_array(value[:1] if t.name != "c16" else np.array([1, 1, 1, 1]), t.name))
    else:  # the gate's Conv reads the channels themselves: it is their consumer, not a second producer
        excite = next(n for n in g.node if n.name == "excite")
        g.node.insert(list(g.node).index(excite), conv("self_gate", "dr", "wg", "sg", k=1))
        g.node.insert(list(g.node).index(excite), helper.make_node("Sigmoid", ["sg"], ["sgs"], name="sig"))
        excite.input[1] = "sgs"
        g.initializer.append(arr("wg", 16, 16, 1, 1))
    onnx.checker.check_model(model)
    found, _ = groups(model)
    assert "'excite'" in found["we"].blocked and not found["we"].gates


def test_two_layers_gating_each_other_are_one_group():
    """a · Sigmoid(b), a and b each a Conv of the input (a gated linear unit): one group, a's, with b
    its gate."""
    nodes = [conv("a", "x", "wa", "ya", k=1), conv("b", "x", "wb", "yb", k=1),
             helper.make_node("Sigmoid", ["yb"], ["s"], name="sig"),
             helper.make_node("Mul", ["ya", "s"], ["m"], name="glu"),
             conv("out", "m", "wo", "y", k=1)]
    m = make_model(nodes, [vi("x", [1, 4, 6, 6])], [vi("y", [1, 3, 6, 6])],
                   [arr("wa", 8, 4, 1, 1), arr("wb", 8, 4, 1, 1, seed=1), arr("wo", 3, 8, 1, 1, seed=2)])
    g, _ = groups(m)
    assert g["wa"].blocked is None and g["wa"].gates == ["wb"] and [c.weight for c in g["wa"].consumers] == ["wo"]
    assert "gate on the channels of 'wa'" in g["wb"].blocked


@pytest.mark.parametrize("up_first", [True, False])
def test_a_swiglu_mlp_is_one_group(up_first):
    """up · SiLU(gate) → down, SiLU written g · Sigmoid(g): the two projections' rows go together,
    whichever comes first."""
    mm = lambda name, x, w, y: helper.make_node("MatMul", [x, w], [y], name=name)  # noqa: E731
    projections = [mm("up", "x", "wu", "u"), mm("gate", "x", "wg", "g")]
    nodes = (projections if up_first else projections[::-1]) + [
        helper.make_node("Sigmoid", ["g"], ["s"], name="sig"),
        helper.make_node("Mul", ["g", "s"], ["silu"], name="silu"),
        helper.make_node("Mul", ["u", "silu"], ["m"], name="glu"), mm("down", "m", "wd", "y")]
    m = make_model(nodes, [vi("x", [2, 3, 8])], [vi("y", [2, 3, 8])],
                   [arr("wu", 8, 16), arr("wg", 8, 16, seed=1), arr("wd", 16, 8, seed=2)])
    g, _ = groups(m)
    (free,) = [x for x in g.values() if not x.blocked]
    assert sorted([free.producer] + free.gates) == ["wg", "wu"] and [c.weight for c in free.consumers] == ["wd"]
