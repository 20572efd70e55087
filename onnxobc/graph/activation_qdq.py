"""Static int8 activations (W8A8) in QDQ form, in the form the target runtime fuses into int8
kernels (its runtimes.base.Int8Form says which):

- onnxruntime: uint8 asymmetric activations, int8 per-channel weights, int32 biases, and a Q/DQ
  pair on every Conv/Gemm output as well as its input: the pattern onnxruntime fuses into
  QLinearConv / QGemm, and DQ → MatMul into MatMulIntegerToFloat (the fast U8S8 path). The
  element-wise ops fed by those outputs (Add, Mul, Concat, pooling, Sigmoid, MatMul of two
  activations) get Q/DQ on their inputs and outputs too, constants included, so onnxruntime runs
  them as QLinearAdd, QLinearMul, ... and the data stays uint8 between layers. A Relu, or a Clip
  from 0, that alone consumes such an output is folded into the Q: its range starts at 0 with
  zero point 0, so the Q clamps exactly as the activation did.
- tensorrt: int8 symmetric activations with zero point 0 on the layer inputs, int8 symmetric
  weights; biases stay float (TensorRT fuses them itself).
- deepsparse: the onnxruntime form on the layers alone (no element-wise ops: standard ONNX has
  no QLinearAdd), with per-tensor weights, then rewritten into the operator form DeepSparse
  runs as int8 (graph/qoperator.py): QLinearConv, MatMulInteger.

Each tensor's range comes from calibration (calib/ranges.py, chosen in prepare.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..solver.grids import activation_grid
from .flops import inferred
from .nodes import consumers, node_name, remove_nodes
from .smooth import SUFFIX as SMOOTHED
from .qoperator import to_qoperator

def _clamp_from_zero(model, node) -> bool:
    if node.op_type == "Relu":
        return True
    if node.op_type != "Clip":
        return False
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "min" in attrs:  # opset < 11
        return attrs["min"] == 0.0
    inits = {t.name: t for t in model.graph.initializer}
    return len(node.input) > 1 and node.input[1] in inits and numpy_helper.to_array(inits[node.input[1]]).size == 1 \
        and float(numpy_helper.to_array(inits[node.input[1]])) == 0.0


# Element-wise ops onnxruntime runs on uint8 (QLinearAdd, QLinearMul, ...) when every input comes
# through a DequantizeLinear and the output goes through a QuantizeLinear; MatMul here means one
# of two activations (QLinearMatMul), a MatMul with a constant weight being a layer.
ELEMENTWISE = ("Add", "Mul", "Concat", "GlobalAveragePool", "AveragePool", "Sigmoid", "LeakyRelu", "MatMul")


@dataclasses.dataclass
class _Plan:
    """Which tensors get a Q/DQ pair (onnxruntime form): the layers' inputs; the outputs of the
    Conv/Gemm layers (and 2-D MatMul + bias) and of the element-wise ops that read them, directly
    or through other such ops, up to where no quantized layer follows (quantization spreads
    forward from the layers, so float islands such as a decomposed LayerNorm stay float); a Relu
    or Clip-from-0 that alone reads one of those outputs is folded into its Q."""

    elementwise: list  # node names
    folded: dict  # producer's output → the Relu / Clip node folded into its Q
    inputs: list  # tensors read through Q/DQ by the quantized nodes
    outputs: list  # tensors whose every consumer reads them through Q/DQ


def _plan(model, layers, form, types: dict) -> _Plan:
    """`types`: flops.inferred's."""
    g = model.graph
    inputs = dict.fromkeys(sorted({a for l in layers for a in l.activations}))
    if not form.outputs:
        return _Plan([], {}, list(inputs), [])
    users_of = consumers(g)
    graph_outputs = {o.name for o in g.output}
    consts = {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT} - {i.name for i in g.input}
    floats = {name for name, (elem, _) in types.items() if elem == TensorProto.FLOAT}
    shapes = {name: dims for name, (_, dims) in types.items()}
    layer_nodes = {n: l for l in layers for n in l.nodes}
    # the tensors some quantized layer reads, directly or through other ops: an element-wise op
    # whose output reaches none (the float tail of a mixed plan) stays float, int8 there would
    # only add rounding
    feeds_layer = set()
    for n in reversed(g.node):
        if node_name(n) in layer_nodes or any(o in feeds_layer for o in n.output):
            feeds_layer.update(n.input)
    quantized, elementwise, folded, outputs = set(), [], {}, {}
    for n in g.node:
        name = node_name(n)
        if name in layer_nodes:
            l = layer_nodes[name]
            n = l.kind.int8_output(model, n, shapes, l.rows * l.groups, users_of)
            if n is None:
                continue
        elif not (form.elementwise and n.op_type in ELEMENTWISE and n.domain in ("", "ai.onnx")
                  and not n.output[0].endswith(SMOOTHED)  # its point is to divide x before x is quantized
                  and all(x in floats or x in consts for x in n.input) and n.output[0] in floats
                  and any(x in quantized for x in n.input) and n.output[0] in feeds_layer
                  and (n.op_type != "MatMul" or not set(n.input) & consts)):
            continue
        out = n.output[0]
        if out in graph_outputs:
            continue
        if name not in layer_nodes:
            elementwise.append(name)
            inputs.update((x, None) for x in n.input if x not in consts)
        users = users_of.get(out, [])
        if (len(users) == 1 and users[0].input[0] == out and _clamp_from_zero(model, users[0])
                and users[0].output[0] not in graph_outputs):
            folded[out] = users[0]
            out = users[0].output[0]
        quantized.add(out)
        outputs[out] = None
    return _Plan(elementwise, folded, list(inputs), list(outputs))


def quantized_tensors(model: onnx.ModelProto, layers, form) -> tuple:
    """(inputs, outputs): the activation tensors that get a Q/DQ pair in `form` (an Int8Form; see
    _Plan). Without form.outputs, only the layers' inputs."""
    plan = _plan(model, layers, form, inferred(model))
    return sorted(plan.inputs), sorted(plan.outputs)


def insert_activation_qdq(model: onnx.ModelProto, layers, ranges: dict, weight_scales: dict, form) -> None:
    """Quantize the activations around `layers` in place, in `form` (an Int8Form): weights must
    already be integer codes behind DequantizeLinear; `weight_scales[weight]` holds their
    per-output-channel scales."""
    g = model.graph
    types = inferred(model)
    shapes = {name: dims for name, (_, dims) in types.items()}
    plan = _plan(model, layers, form, types)
    consts = {t.name: t for t in g.initializer if t.data_type == TensorProto.FLOAT}
    layer_nodes = {n for l in layers for n in l.nodes}
    for n in g.node:  # an unnamed layer node is known by its output, which a folded Relu renames
        if not n.name and n.output[0] in layer_nodes:
            n.name = n.output[0]
    if plan.folded:
        remove_nodes(g, {(n.op_type, n.output[0]) for n in plan.folded.values()})
        for n in g.node:
            if n.output and n.output[0] in plan.folded:
                n.output[0] = plan.folded[n.output[0]].output[0]
    elementwise = set(plan.elementwise)
    grids = {}
    for t in dict.fromkeys(plan.inputs + plan.outputs):
        if t not in ranges:
            raise ValueError(f"no calibration range for activation {t!r}")
        scale, zero = activation_grid(*ranges[t], form.symmetric)
        kind = TensorProto.INT8 if form.symmetric else TensorProto.UINT8
        grids[t] = scale
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{t}.act_scale"),
                              helper.make_tensor(f"{t}.act_zero", kind, [], [zero])])
    rewired, const_dq = set(plan.outputs), []
    for n in g.node:  # every consumer of a quantized output reads it through the pair; quantized nodes read their inputs so
        name = node_name(n)
        for i, x in enumerate(n.input):
            if x in grids and (x in rewired or name in elementwise or (name in layer_nodes and i == 0)):
                n.input[i] = f"{x}.dq"
            elif name in elementwise and x in consts:
                n.input[i] = _quantized_constant(g, consts[x], f"{x}.{name}", const_dq)
    if form.int32_bias:
        _quantize_biases(model, layers, grids, weight_scales, shapes)
    pairs = {t: [helper.make_node("QuantizeLinear", [t, f"{t}.act_scale", f"{t}.act_zero"], [f"{t}.q"],
                                  name=f"{t}.quantize"),
                 helper.make_node("DequantizeLinear", [f"{t}.q", f"{t}.act_scale", f"{t}.act_zero"], [f"{t}.dq"],
                                  name=f"{t}.dequantize")] for t in grids}
    produced = {o for n in g.node for o in n.output}
    order = const_dq + [p for t, ps in pairs.items() if t not in produced for p in ps]  # graph inputs first
    for n in g.node:
        order.append(n)
        order.extend(p for o in n.output if o in pairs for p in pairs[o])
    del g.node[:]
    g.node.extend(order)
    if form.operator_form:
        to_qoperator(model, layers)


def _quantized_constant(g, tensor, name: str, nodes: list) -> str:
    """A float constant read by an element-wise op as uint8 codes on its own [min, max] ∪ {0} grid
    behind a DequantizeLinear (appended to `nodes`); returns the DequantizeLinear's output. A
    single value is exact on that grid."""
    v = numpy_helper.to_array(tensor).astype(np.float64)
    scale, zero = activation_grid(v.min(initial=0.0), v.max(initial=0.0), False)
    codes = np.clip(np.rint(v / scale) + zero, 0, 255).astype(np.uint8)
    g.initializer.extend([numpy_helper.from_array(codes, f"{name}.q"),
                          numpy_helper.from_array(np.array(scale, np.float32), f"{name}.scale"),
                          helper.make_tensor(f"{name}.zero", TensorProto.UINT8, [], [zero])])
    nodes.append(helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zero"], [f"{name}.dq"],
                                  name=f"{name}.dequantize"))
    return f"{name}.dq"


def _quantize_biases(model, layers, act_scales: dict, weight_scales: dict, shapes: dict) -> None:
    """Float bias initializers of Conv, Gemm (alpha = beta = 1) and the bias Add after a MatMul
    become int32 codes with scale = input scale × weight scale behind a DequantizeLinear, as
    onnxruntime's fusion wants."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    by_name = {node_name(n): n for n in g.node}
    for l in layers:
        if l.weight not in weight_scales:
            continue
        for k, name in enumerate(l.nodes):
            node = by_name[name]
            slot = l.kind.int32_bias_slot(model, node, l.attrs[k], shapes, len(weight_scales[l.weight]), inits)
            if slot is None:
                continue
            b = numpy_helper.to_array(inits[slot[0].input[slot[1]]]).astype(np.float64)
            scale = act_scales[node.input[0].removesuffix(".dq")] * np.asarray(weight_scales[l.weight], np.float64)
            if b.shape != scale.shape:
                continue
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            codes = np.clip(np.rint(b / scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
            q = f"{slot[0].input[slot[1]]}.{name}"
            g.initializer.extend([numpy_helper.from_array(codes, f"{q}.q"),
                                  numpy_helper.from_array(scale, f"{q}.scale")])
            g.node.insert(0, helper.make_node("DequantizeLinear", [f"{q}.q", f"{q}.scale"],
                                              [f"{q}.dq"], name=f"{q}.dequantize", axis=0))
            slot[0].input[slot[1]] = f"{q}.dq"
