"""Conv inputs as matrices (im2col) whose columns match the weight view of graph/layers.py:
for each output position, the input patch ordered (kernel positions, input channels of the
group). Then unfold(x)[j] @ W_jᵀ is group j's Conv output."""

from __future__ import annotations

import itertools

import numpy as np


def conv_pads(in_shape, kernel, strides, dilations, pads=None, auto_pad="NOTSET"):
    """Begin and end padding per spatial axis, ONNX rules (pads = [b1, b2…, e1, e2…])."""
    k = len(kernel)
    if auto_pad in ("NOTSET", "", b"NOTSET", b""):
        p = list(pads) if pads else [0] * (2 * k)
        return p[:k], p[k:]
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad == "VALID":
        return [0] * k, [0] * k
    begin, end = [], []
    for n, kk, s, d in zip(in_shape, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (kk - 1) * d + 1 - n)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin, end


def unfold(x: np.ndarray, kernel, strides=None, dilations=None, pads=None, auto_pad="NOTSET", group: int = 1):
    """x (N, C, spatial…) → one (N · output positions, prod(kernel) · C/group) matrix per group."""
    x = np.asarray(x)
    k = len(kernel)
    strides = list(strides or [1] * k)
    dilations = list(dilations or [1] * k)
    begin, end = conv_pads(x.shape[2:], kernel, strides, dilations, pads, auto_pad)
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end)))
    out = [(xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(k)]
    patches = []
    for offs in itertools.product(*[range(kk) for kk in kernel]):
        sl = tuple(slice(o * d, o * d + s * (n - 1) + 1, s) for o, d, s, n in zip(offs, dilations, strides, out))
        patches.append(xp[(slice(None), slice(None)) + sl])  # (N, C, out…)
    p = np.stack(patches, axis=-1)  # (N, C, out…, K)
    p = np.moveaxis(p, 1, -1)  # (N, out…, K, C)
    n, c = x.shape[0], x.shape[1]
    rows = n * int(np.prod(out))
    return [p[..., j * (c // group):(j + 1) * (c // group)].reshape(rows, -1) for j in range(group)]
