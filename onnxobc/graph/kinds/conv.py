"""Conv (any kernel rank, groups, depthwise). The view follows DESIGN.md: (C_out, C_in/g, k…)
becomes (C_out, k… · C_in/g) with columns ordered (kernel positions, input channels), so N:M
groups and 4-blocks run along input channels, and a grouped Conv is one matrix per group."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import helper

from ..unfold import unfold
from .base import LayerKind

# attributes of the low-rank split's first node (the k×k one); the second is 1×1
FIRST_ONLY = ("strides", "pads", "dilations", "auto_pad", "kernel_shape", "group")


class Conv(LayerKind):
    op = "Conv"

    def problem(self, attrs, shape):
        if len(shape) < 3:
            return f"Conv weight of rank {len(shape)}"
        if shape[0] % int(attrs.get("group", 1)):
            return "Conv output channels not divisible by group"
        return None

    def groups(self, attrs):
        return int(attrs.get("group", 1))

    def kernel(self, shape):
        return tuple(shape[2:])

    def rows(self, layer):
        return layer.weight_shape[0] // layer.groups

    def cols(self, layer):
        return int(np.prod(layer.weight_shape[1:]))

    def matrices(self, layer, w):
        m = np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)  # (C_out, k…, C_in/g)
        return [np.ascontiguousarray(g) for g in np.split(m, layer.groups, axis=0)]

    def weight_from(self, layer, mats):
        m = np.concatenate(mats, axis=0)
        s = layer.weight_shape
        return np.ascontiguousarray(np.moveaxis(m.reshape((s[0],) + tuple(s[2:]) + (s[1],)), -1, 1))

    def output_axis(self, layer):
        return 0

    def input_channels(self, layer):
        return layer.weight_shape[1]

    def hessian_inputs(self, layer, attrs, x):
        return unfold(x, layer.kernel, attrs.get("strides"), attrs.get("dilations"), attrs.get("pads"),
                      attrs.get("auto_pad", "NOTSET"), layer.groups)

    def positions(self, dims):
        return int(np.prod(dims[2:]))

    def channel_shape(self, layer):
        return (layer.rows * layer.groups,) + (1,) * len(layer.kernel)

    def input_rank(self, layer):
        return 2 + len(layer.kernel)

    def channel_axis(self, rank):
        return 1

    def input_columns(self, layer, per):
        # columns ordered (kernel positions, input channels): channel c at c, c + C, c + 2C, …
        c_in = layer.weight_shape[1]
        return np.arange(int(np.prod(layer.kernel)))[None, :] * c_in + np.arange(c_in)[:, None]

    def with_inputs(self, layer, channels, per):
        shape = (layer.weight_shape[0], channels) + tuple(layer.weight_shape[2:])
        return dataclasses.replace(layer, weight_shape=shape)

    def depthwise(self, layer):
        return layer.groups > 1 and layer.weight_shape[1] == 1 and layer.groups == layer.weight_shape[0]

    def factor_layouts(self, layer, A, B):
        c_in = layer.weight_shape[1]
        first = np.moveaxis(B.reshape((B.shape[0],) + tuple(layer.kernel) + (c_in,)), -1, 1)
        return first, A.reshape(A.shape + (1,) * len(layer.kernel)), 0

    def split_attributes(self, layer, node, first):
        first.attribute.extend(a for a in node.attribute if a.name in FIRST_ONLY)
        keep = [a for a in node.attribute if a.name not in FIRST_ONLY]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("kernel_shape", [1] * len(layer.kernel))])

    def operator_form(self, graph, inits, users, node, x, w, bias):
        from ..qoperator import qlinear_conv

        q = users.get(node.output[0], [])
        if len(q) != 1 or q[0].op_type != "QuantizeLinear" or node.output[0] in {o.name for o in graph.output}:
            return None
        return [qlinear_conv(graph, inits, node, x, w, bias, q[0])], [(q[0].op_type, q[0].output[0])]
