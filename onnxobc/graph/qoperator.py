"""The operator form of int8 layers, which DeepSparse runs as int8 (it does not fuse a QDQ Conv):
each quantized layer of a QDQ graph (activation_qdq.py, onnxruntime form) is rewritten in place.

- DQ(x) → Conv(DQ(W), DQ(b int32)) → Q(y) becomes one QLinearConv reading the uint8 input and
  writing the uint8 output; the Q/DQ nodes only it used disappear.
- DQ(x) → Gemm / MatMul(DQ(W)) becomes MatMulInteger(x, W) [→ Add(b int32), Gemm] → Cast →
  Mul(x scale · W scale), writing the layer's float output as before (its Q, if any, stays).

A weight whose scales are all equal (per-tensor, as DeepSparse wants) gets scalar scale and zero
point inputs. A layer whose pattern differs (no DQ on its input, 4-bit codes, Gemm with transA or
alpha/beta ≠ 1, a Conv output read by more than its Q) keeps its QDQ form.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .nodes import consumers, node_name


def to_qoperator(model: onnx.ModelProto, layers) -> int:
    """Rewrite the quantized nodes of `layers` in place; returns how many were rewritten."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    users = consumers(g)
    layer_nodes = {n: l for l in layers for n in l.nodes}
    replaced, done = {}, 0
    for n in g.node:
        layer = layer_nodes.get(node_name(n))
        if layer is None:
            continue
        x, w = (producer.get(n.input[i]) for i in (0, 1))
        if not (_dq(x) and _dq(w) and inits.get(w.input[0]) is not None
                and inits[w.input[0]].data_type in (TensorProto.INT8, TensorProto.UINT8)):
            continue
        bias = producer.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if len(n.input) > 2 and n.input[2] and not (_dq(bias) and inits.get(bias.input[0]) is not None
                                                    and inits[bias.input[0]].data_type == TensorProto.INT32):
            continue  # a float bias (or Gemm's C) keeps the QDQ form
        form = layer.kind.operator_form(g, inits, users, n, x, w, bias)
        if form is None:
            continue
        new, gone = form
        replaced.update({key: [] for key in gone})
        replaced[_key(n)] = new
        done += 1
    order = []
    for n in g.node:
        order.extend(replaced.get(_key(n), [n]))
    del g.node[:]
    g.node.extend(order)
    _drop_dead(g)
    return done


def _key(node) -> tuple:
    return node.op_type, node.output[0]


def _dq(node) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"


def _weight_grid(g, inits, w) -> tuple:
    """The weight's (scale, zero point) inputs: scalars when every row shares one grid."""
    scale = numpy_helper.to_array(inits[w.input[1]])
    zero = numpy_helper.to_array(inits[w.input[2]]) if len(w.input) > 2 else np.zeros_like(scale, np.int8)
    if scale.size == 1 or (np.all(scale == scale.flat[0]) and np.all(zero == zero.flat[0])):
        names = f"{w.input[0]}.tensor_scale", f"{w.input[0]}.tensor_zero"
        if names[0] not in inits:
            inits[names[0]] = numpy_helper.from_array(np.asarray(scale.flat[0], np.float32), names[0])
            inits[names[1]] = numpy_helper.from_array(np.asarray(zero.flat[0], zero.dtype), names[1])
            g.initializer.extend([inits[names[0]], inits[names[1]]])
        return names
    return w.input[1], w.input[2]


def qlinear_conv(g, inits, n, x, w, bias, q):
    """One QLinearConv reading the uint8 input of DQ `x` and writing the output of `q`, the only
    QuantizeLinear reading the Conv `n`."""
    w_scale, w_zero = _weight_grid(g, inits, w)
    node = helper.make_node("QLinearConv", [x.input[0], x.input[1], x.input[2], w.input[0], w_scale, w_zero,
                                            q.input[1], q.input[2]] + ([bias.input[0]] if bias is not None else []),
                            [q.output[0]], name=node_name(n), domain="")
    node.attribute.extend(n.attribute)
    return node


def matmul_integer(g, inits, n, x, w, bias) -> list | None:
    """MatMulInteger (uint8 input × int8 weight, int32 out) → [+ int32 bias] → Cast → Mul by the
    product of the scales, or None where the node is not a plain product (an int32 bias is only
    written for beta = 1)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:  # a Gemm that is not a plain product
        return None
    w_scale, w_zero = _weight_grid(g, inits, w)
    zero = numpy_helper.to_array(inits[w_zero])
    if zero.ndim:  # MatMulInteger takes a per-column zero point only on the rows' axis; keep QDQ
        return None
    codes = w.input[0]
    if attrs.get("transB", 0):
        codes = f"{w.input[0]}.transposed"
        if codes not in inits:
            inits[codes] = numpy_helper.from_array(numpy_helper.to_array(inits[w.input[0]]).T.copy(), codes)
            g.initializer.append(inits[codes])
    name, out = node_name(n), n.output[0]
    scale = f"{name}.int32_scale"
    x_scale = numpy_helper.to_array(inits[x.input[1]]).astype(np.float64)
    product = (x_scale * numpy_helper.to_array(inits[w_scale]).astype(np.float64)).astype(np.float32)
    g.initializer.append(numpy_helper.from_array(product, scale))
    nodes = [helper.make_node("MatMulInteger", [x.input[0], codes, x.input[2], w_zero], [f"{name}.int32"],
                              name=f"{name}.matmul_integer")]
    acc = f"{name}.int32"
    if bias is not None:
        nodes.append(helper.make_node("Add", [acc, bias.input[0]], [f"{name}.int32_bias"], name=f"{name}.add_bias"))
        acc = f"{name}.int32_bias"
    nodes += [helper.make_node("Cast", [acc], [f"{name}.float"], name=f"{name}.cast", to=TensorProto.FLOAT),
              helper.make_node("Mul", [f"{name}.float", scale], [out], name=name)]
    return nodes


def _drop_dead(g) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads any more, until none is left."""
    outputs = {o.name for o in g.output}
    while True:
        read = {x for n in g.node for x in n.input} | outputs
        keep = [n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                or any(o in read for o in n.output)]
        if len(keep) == len(g.node):
            return
        del g.node[:]
        g.node.extend(keep)
