"""Hard-swish and hard-sigmoid spelled out element by element, fused: the same outputs through
onnxruntime, the nodes gone, and what must not fuse left as it was."""

import copy

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run

from onnxobc.graph.fuse import fuse_hard_activations

X = np.linspace(-8.0, 8.0, 2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)  # every branch of the clip


def _hard(order: str, opset: int = 13, sixth: str = "Div", extra_output: str | None = None, high: float = 6.0,
          clip_attrs: bool = False):
    """x · Clip(x + 3, 0, high) / 6: `order` "mul-div" (Paddle2ONNX's), "div-mul" or "sigmoid" (no · x)."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("three", 3.0), ("lo", 0.0), ("hi", high), ("six", 6.0 if sixth == "Div" else 1.0 / 6.0))]
    clip = helper.make_node("Clip", ["a"], ["c"], min=0.0, max=high) if clip_attrs else \
        helper.make_node("Clip", ["a", "lo", "hi"], ["c"])
    # Relu first: x is a node's output, as in a real graph
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["three", "r"], ["a"]), clip]
    if order == "mul-div":
        nodes += [helper.make_node("Mul", ["c", "r"], ["m"]), helper.make_node(sixth, ["m", "six"], ["y"])]
    else:
        nodes.append(helper.make_node(sixth, ["c", "six"], ["s"]))
        nodes.append(helper.make_node("Mul", ["r", "s"], ["y"]) if order == "div-mul" else
                     helper.make_node("Identity", ["s"], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X.shape))
    names = ["y"] + ([extra_output] if extra_output else [])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(X.shape)) for n in names]
    return make_model(nodes, [x], outs, inits, opset=opset)


def _fused(model, **expect):
    out = copy.deepcopy(model)
    found = fuse_hard_activations(out)
    assert {k: found[k] for k in expect} == expect
    assert len(out.graph.node) == len(model.graph.node) - found["nodes"]
    for a, b in zip(run(model, {"x": X}), run(out, {"x": X})):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    return out


@pytest.mark.parametrize("order", ["mul-div", "div-mul"])
@pytest.mark.parametrize("sixth", ["Div", "Mul"])
def test_hard_swish_is_one_node_from_opset_14(order, sixth):
    out = _fused(_hard(order, opset=14, sixth=sixth), **{"hard-swish": 1, "hard-sigmoid": 0, "nodes": 3})
    assert [n.op_type for n in out.graph.node] == ["Relu", "HardSwish"]
    assert not out.graph.initializer  # its constants went with it


@pytest.mark.parametrize("opset, clip_attrs", [(13, False), (10, True)])  # before 11 the bounds are attributes
def test_below_opset_14_the_model_is_converted_for_hard_swish(opset, clip_attrs):
    m = _hard("mul-div", opset=opset, clip_attrs=clip_attrs)
    out = _fused(m, **{"hard-swish": 1, "nodes": 3, "converted": (opset, 14)})
    assert [n.op_type for n in out.graph.node] == ["Relu", "HardSwish"]
    assert [o.version for o in out.opset_import if o.domain in ("", "ai.onnx")] == [14]


def test_where_the_conversion_fails_a_hard_sigmoid_times_x_stands_in(monkeypatch):
    import onnxobc.graph.fuse as fuse

    def fails(model, version):
        raise ValueError("the model could not be converted")

    monkeypatch.setattr(fuse, "ensure_opset", fails)
    out = _fused(_hard("mul-div", opset=13), **{"hard-swish": 1, "nodes": 2, "converted": None})
    assert [n.op_type for n in out.graph.node] == ["Relu", "HardSigmoid", "Mul"]


def test_hard_sigmoid_alone():
    out = _fused(_hard("sigmoid"), **{"hard-swish": 0, "hard-sigmoid": 1, "nodes": 2, "converted": None})
    assert [n.op_type for n in out.graph.node] == ["Relu", "HardSigmoid", "Identity"]


@pytest.mark.parametrize("model", [
    _hard("mul-div", extra_output="m"),  # the product before / 6 is a graph output
    _hard("mul-div", extra_output="c"),  # so is the clip
    _hard("mul-div", high=5.0),  # not the hard-swish's bounds
], ids=["product-read", "clip-read", "other-bound"])
def test_what_is_read_elsewhere_or_differs_stays(model):
    _fused(model, **{"hard-swish": 0, "hard-sigmoid": 0, "nodes": 0})


def test_the_hard_sigmoid_inside_stays_whole_when_its_gate_is_read_twice():
    m = _hard("div-mul")  # s = Clip(x + 3, 0, 6) / 6 read by the Mul and a second output: hard-sigmoid only
    m.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, list(X.shape)))
    out = _fused(m, **{"hard-swish": 0, "hard-sigmoid": 1})
    assert [n.op_type for n in out.graph.node] == ["Relu", "HardSigmoid", "Mul"]
