"""What every layer kind provides. Methods take the Layer (graph/layers.py) they describe."""

from __future__ import annotations

import dataclasses

import numpy as np


class LayerKind:
    op: str
    has_bias_input = True  # the node takes a bias (a Conv's B, a Gemm's C) as its third input
    matmulnbits = False  # onnxruntime's MatMulNBits kernel can replace its nodes
    dynamic_int8 = False  # it has a dynamic int8 form (graph/dynamic.py)

    def problem(self, attrs: dict, shape: tuple) -> str | None:
        """Why a node of this kind with a weight of `shape` is not compressed; None when it is."""
        if len(shape) != 2:
            return f"{self.op} weight of rank {len(shape)} (batched weights are not compressed)"
        return None

    def groups(self, attrs: dict) -> int:
        return 1

    def kernel(self, shape: tuple) -> tuple:
        return ()

    def view_key(self, attrs: dict):
        """Nodes sharing a weight are one layer only when they view it alike (the same key)."""
        return None

    # the 2-D view
    def rows(self, layer) -> int:
        raise NotImplementedError

    def cols(self, layer) -> int:
        raise NotImplementedError

    def matrices(self, layer, w: np.ndarray) -> list:
        raise NotImplementedError

    def weight_from(self, layer, mats: list) -> np.ndarray:
        raise NotImplementedError

    def output_axis(self, layer) -> int:
        """The axis of the ONNX weight tensor that indexes output channels (the view's rows)."""
        raise NotImplementedError

    def input_channels(self, layer) -> int:
        """The input channels N:M groups and 4-blocks run along."""
        return layer.cols

    # calibration and costs
    def hessian_inputs(self, layer, attrs: dict, x: np.ndarray) -> list:
        """One node's activation `x` as sample matrices (samples × cols), one per group."""
        return [x.reshape(-1, layer.cols)]

    def positions(self, dims: list) -> int:
        """Output positions per sample of a node whose output has `dims` (batch first)."""
        return int(np.prod(dims[1:-1]))

    def channel_shape(self, layer) -> tuple:
        """The shape of one value per output channel that broadcasts over a node's output."""
        return (layer.rows * layer.groups,)

    def input_rank(self, layer) -> int:
        return 2

    def channel_axis(self, rank: int) -> int:
        """The axis of a node's output (of `rank`) that holds its output channels."""
        return rank - 1

    def input_columns(self, layer, per: int) -> np.ndarray:
        """(input channels, columns each) of the view's columns that read each channel of the
        activation, `per` consecutive columns a channel where a Flatten spread it."""
        return np.arange(layer.cols).reshape(-1, per)

    def with_inputs(self, layer, channels: int, per: int):
        """The layer with `channels` input channels (`per` columns each) instead of its own."""
        shape = list(layer.weight_shape)
        shape[1 - self.output_axis(layer)] = channels * per
        return dataclasses.replace(layer, weight_shape=tuple(shape))

    def depthwise(self, layer) -> bool:
        """Whether each output channel reads only its own input channel (it passes channels through)."""
        return False

    def bias_step(self, attrs: dict, shift: np.ndarray) -> np.ndarray:
        """What to add to the node's bias input for its output to move by `shift`."""
        return shift

    # low-rank: Ŵ = A B (A: rows × r, B: r × cols) as two nodes, the first computing B x
    def factor_layouts(self, layer, A: np.ndarray, B: np.ndarray) -> tuple:
        """(first node's weight from B, second node's weight from A) in ONNX layout, and the axis
        of each that indexes its output channels."""
        raise NotImplementedError

    def split_attributes(self, layer, node, first) -> None:
        """Set the attributes of the two low-rank nodes: `first` (new) and `node` (the second)."""

    def product_layout(self, layer, A: np.ndarray, B: np.ndarray) -> tuple:
        """(left, right) whose matrix product is A B in the weight's ONNX layout, flattened after
        its first axis."""
        first = self.factor_layouts(layer, A, B)[0]
        return A, first.reshape(len(B), -1)

    # int8
    def int8_output(self, model, node, shapes: dict, rows: int, users_of: dict):
        """The node whose output gets the Q/DQ pair of a quantized layer output (a bias Add after a
        MatMul, say), or None where the int8 kernel reads no quantized output."""
        return node

    def int32_bias_slot(self, model, node, attrs: dict, shapes: dict, channels: int, inits: dict):
        """(node, input index) of the bias that becomes int32 codes in the int8 form, or None."""
        if len(node.input) > 2 and node.input[2] in inits:
            return node, 2
        return None

    def operator_form(self, graph, inits: dict, users: dict, node, x, w, bias):
        """(nodes replacing `node`, keys (op type, first output) of nodes that go too) in the
        operator form of int8, or None where the node keeps its QDQ form."""
        from ..qoperator import matmul_integer

        new = matmul_integer(graph, inits, node, x, w, bias)
        return None if new is None else (new, [])
