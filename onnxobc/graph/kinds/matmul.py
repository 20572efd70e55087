"""MatMul with a constant right operand B (K × N): rows = N, cols = K, the samples are the left
operand reshaped to (−1, K). It has no bias input: a bias is the Add of a constant vector that
alone reads its output (matmul_bias)."""

from __future__ import annotations

import numpy as np

from ..bias import matmul_bias
from .base import LayerKind


class MatMul(LayerKind):
    op = "MatMul"
    has_bias_input = False
    matmulnbits = True
    dynamic_int8 = True

    def rows(self, layer):
        return layer.weight_shape[1]

    def cols(self, layer):
        return layer.weight_shape[0]

    def matrices(self, layer, w):
        return [np.ascontiguousarray(w.T)]

    def weight_from(self, layer, mats):
        return np.ascontiguousarray(mats[0].T)

    def output_axis(self, layer):
        return 1

    def bias_step(self, attrs, shift):
        return None

    def factor_layouts(self, layer, A, B):
        return B.T, A.T, 1

    def product_layout(self, layer, A, B):
        return B.T, A.T

    def int8_output(self, model, node, shapes, rows, users_of):
        # 2-D with its bias Add: onnxruntime fuses the pair into a Gemm, which runs as QGemm only with a
        # Q on its output (else it dequantizes the weight at every run); N-D: DQ → MatMul fuses into
        # MatMulIntegerToFloat as it is
        if len(shapes.get(node.input[0]) or ()) != 2:
            return None
        bias = matmul_bias(model, node, rows)
        return node if bias is None else next(u for u in users_of[node.output[0]] if bias in u.input)

    def int32_bias_slot(self, model, node, attrs, shapes, channels, inits):
        # only 2-D: onnxruntime's MatMulIntegerToFloat mishandles an int32 bias
        rank = len(shapes.get(node.input[0].removesuffix(".dq")) or ())
        bias = matmul_bias(model, node, channels) if rank == 2 else None
        if not bias:
            return None
        user = next(n for n in model.graph.node if node.output[0] in n.input)
        return user, list(user.input).index(bias)
