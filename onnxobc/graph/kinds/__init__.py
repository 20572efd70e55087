"""Layer kinds: Conv, Gemm and MatMul with a constant weight, one class each, registered here by
op type. A kind owns what differs between them: which nodes it takes, the weight's 2-D view
(rows = output channels, cols = the reduction dimension) and its inverse, the transform of the
activation into the Hessian's samples, MACs per output position, where a per-channel shift and a
bias go, the two-node low-rank split and the int8 forms. A new kind (ConvTranspose, say) is one
file here and one line in KINDS."""

from __future__ import annotations

from .base import LayerKind
from .conv import Conv
from .gemm import Gemm
from .matmul import MatMul

KINDS = {k.op: k for k in (Conv(), Gemm(), MatMul())}

__all__ = ["KINDS", "LayerKind"]
