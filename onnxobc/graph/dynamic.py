"""Dynamic int8 for MatMuls, the form onnxruntime's quantize_dynamic writes and onnxruntime runs
with int8 kernels (DynamicQuantizeMatMul / MatMulIntegerToFloat):

    x → DynamicQuantizeLinear → (x_q uint8, x_scale, x_zero)      one per input tensor
      → MatMulInteger(x_q, W_q int8, x_zero, W_zero) → Cast → Mul(x_scale · W_scale) → y

The activations are quantized per tensor at run time (their range from each batch), the weights
are the integer codes of a per-output-channel grid with zero point 0."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .nodes import node_name, replace_initializer


def store_dynamic(model: onnx.ModelProto, layer, codes: np.ndarray, scale: np.ndarray) -> None:
    """Replace every MatMul of `layer` by the dynamic int8 form, in place. `codes`: the (K, N)
    int8 codes in the weight's layout; `scale`: one per output channel (N)."""
    g = model.graph
    name = layer.weight
    replace_initializer(g, name, [
        numpy_helper.from_array(np.asarray(codes).astype(np.int8), f"{name}.q"),
        numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}.zero"),
        numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}.scale")])
    produced = {o for n in g.node for o in n.output}
    nodes = set(layer.nodes)
    order = []
    for node in g.node:
        if node_name(node) not in nodes:
            order.append(node)
            continue
        x, n, out = node.input[0], node_name(node), node.output[0]
        q = f"{x}.dynamic_q"
        if q not in produced:  # one quantization per input tensor, shared by the MatMuls reading it
            order.append(helper.make_node("DynamicQuantizeLinear", [x], [q, f"{x}.dynamic_scale", f"{x}.dynamic_zero"],
                                          name=f"{x}.dynamic_quantize"))
            produced.add(q)
        order += [helper.make_node("MatMulInteger", [q, f"{name}.q", f"{x}.dynamic_zero", f"{name}.zero"],
                                   [f"{n}.int32"], name=f"{n}.matmul_integer"),
                  helper.make_node("Cast", [f"{n}.int32"], [f"{n}.float"], name=f"{n}.cast", to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{x}.dynamic_scale", f"{name}.scale"], [f"{n}.scales"],
                                   name=f"{n}.scales"),
                  helper.make_node("Mul", [f"{n}.float", f"{n}.scales"], [out], name=n)]
    del g.node[:]
    g.node.extend(order)
