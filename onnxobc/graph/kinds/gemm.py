"""Gemm, Y = alpha · A B + beta · C with a constant B (transB honoured; transA is not compressed)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from .base import LayerKind


class Gemm(LayerKind):
    op = "Gemm"

    def problem(self, attrs, shape):
        if attrs.get("transA", 0):
            return super().problem(attrs, shape) or "Gemm with transA = 1"
        return super().problem(attrs, shape)

    def view_key(self, attrs):
        return attrs.get("transB", 0)

    @staticmethod
    def _rows_first(layer) -> bool:
        return bool(layer.attrs[0].get("transB", 0))

    def rows(self, layer):
        return layer.weight_shape[0 if self._rows_first(layer) else 1]

    def cols(self, layer):
        return layer.weight_shape[1 if self._rows_first(layer) else 0]

    def matrices(self, layer, w):
        return [np.ascontiguousarray(w if self._rows_first(layer) else w.T)]

    def weight_from(self, layer, mats):
        return np.ascontiguousarray(mats[0] if self._rows_first(layer) else mats[0].T)

    def output_axis(self, layer):
        return 0 if self._rows_first(layer) else 1

    def bias_step(self, attrs, shift):
        return shift * float(attrs.get("alpha", 1.0)) / float(attrs.get("beta", 1.0))

    def factor_layouts(self, layer, A, B):
        return B, A, 0  # both nodes are written with transB = 1

    def split_attributes(self, layer, node, first):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        first.attribute.extend([helper.make_attribute("alpha", float(attrs.get("alpha", 1.0))),
                                helper.make_attribute("transB", 1)])
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("beta", float(attrs.get("beta", 1.0))),
                               helper.make_attribute("transB", 1)])

    def product_layout(self, layer, A, B):
        return (A, B) if self._rows_first(layer) else (B.T, A.T)

    def int32_bias_slot(self, model, node, attrs, shapes, channels, inits):
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        return super().int32_bias_slot(model, node, attrs, shapes, channels, inits)
