"""Small ONNX models built in the tests, for graph and capture tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_model(c_in, c_out, kernel, group=1, bias=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((c_out, c_in // group) + tuple(kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W")]
    ins = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b"))
        ins.append("b")
    node = helper.make_node("Conv", ins, ["y"], name="conv", group=group, kernel_shape=list(kernel), **attrs)
    spatial = ["s%d" % i for i in range(len(kernel))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c_in] + spatial)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", c_out] + ["o%d" % i for i in range(len(kernel))])
    return make_model([node], [x], [y], inits), W


def run(model, feeds, fuse=True):
    """The model's outputs on onnxruntime's CPU; `fuse=False` stops at its basic optimizations
    (constant folding), before it fuses nodes into other kernels."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not fuse:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def effective_weights(model, names, feeds):
    """The float weights a model computes with, initializers or DequantizeLinear outputs alike,
    read through onnxruntime by exposing them as outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(onnx.ValueInfoProto(name=n))
    return dict(zip(names, run(m, feeds)[-len(names):]))


def gelu(x: str, out: str, consts: str = "") -> list:
    """GELU as torch.onnx writes it, x · (erf(x / √2) + 1) · 0.5, reading constants named
    `{consts}sqrt2`, `{consts}one` and `{consts}half`."""
    return [helper.make_node("Div", [x, f"{consts}sqrt2"], [f"{out}.d"], name="div"),
            helper.make_node("Erf", [f"{out}.d"], [f"{out}.e"], name="erf"),
            helper.make_node("Add", [f"{out}.e", f"{consts}one"], [f"{out}.e1"], name="add1"),
            helper.make_node("Mul", [x, f"{out}.e1"], [f"{out}.g0"], name="mul"),
            helper.make_node("Mul", [f"{out}.g0", f"{consts}half"], [out], name="half")]
