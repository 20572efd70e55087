"""Writing solved layers into the model, each family in its own form (families/): the weights
(pruned zeros included) into their initializers, each layer's mean shift into its bias, the
opset raised to what the forms need, then each family's parts in registry order (low-rank
factors, codebooks, integer codes behind DequantizeLinear or MatMulNBits, the parts added to
them), int8 activations in the form the target runtime fuses, sparse storage where it is
smaller, and the versions the runtime reads."""

from __future__ import annotations

import dataclasses

import onnx

from . import families, runtimes
from .graph.activation_qdq import insert_activation_qdq
from .graph.bias import add_output_shift
from .graph.qdq import ensure_opset
from .graph.write import drop_unused_initializers, set_weights, sparse_where_smaller


@dataclasses.dataclass
class Written:
    """What the families' writers leave for the steps after them."""

    scales: dict = dataclasses.field(default_factory=dict)  # weight → per-channel scales of its integer codes
    int8: dict = dataclasses.field(default_factory=dict)  # runtime → layers whose activations go int8
    nbits: set = dataclasses.field(default_factory=set)  # weights written as MatMulNBits
    sparse_parts: set = dataclasses.field(default_factory=set)  # float parts to store sparse where smaller


def write(prep, solved: dict, options: dict) -> onnx.ModelProto:
    """The compressed model: `solved[weight]` (a solve.Solved) written for each layer in the
    form its `options[weight]` asks for (layers not in `solved` stay as they are). Fills each
    summary row's "storage"."""
    layers = [l for l in prep.layers if l.weight in solved]
    used = {l.weight: [f for f in families.FAMILIES if f.key in solved[l.weight].parts] for l in layers}
    out = set_weights(prep.model, {l.weight: _initializer(l, solved[l.weight], used[l.weight]) for l in layers})
    for l in layers:
        if solved[l.weight].shift is not None:
            add_output_shift(out, l, solved[l.weight].shift)
    opsets = [v for l in layers for f in used[l.weight]
              if (v := f.opset(l, solved[l.weight].parts[f.key], options[l.weight])) is not None]
    if opsets:
        out = ensure_opset(out, max(opsets))
    ctx = Written()
    for f in families.FAMILIES:
        items = [(l, solved[l.weight], options[l.weight]) for l in layers if f in used[l.weight]]
        if items:
            f.export(out, items, ctx)
    for name in sorted(ctx.int8):
        insert_activation_qdq(out, ctx.int8[name], prep.ranges, ctx.scales, runtimes.get(name).int8)
    if ctx.int8:
        drop_unused_initializers(out)
    floats = {l.weight for l in layers if all(f.float_weight for f in used[l.weight])}
    sparse = sparse_where_smaller(out, floats | ctx.sparse_parts)
    for l in layers:
        solved[l.weight].row["storage"] = _label(l, solved[l.weight], used[l.weight], options[l.weight], ctx, sparse)
    for name in sorted({options[l.weight].runtime for l in layers}):
        out = runtimes.get(name).conform(out)
    return out


def _initializer(layer, s, used: list):
    """The float weight as written: Ŵ, or the part a family keeps as the initializer (the sparse
    part of sparse + low-rank, to which the low-rank part is added)."""
    for f in used:
        if hasattr(f, "initializer"):
            return f.initializer(layer, s.parts[f.key])
    return s.weight


def _label(layer, s, used: list, opt, ctx: Written, sparse) -> str:
    """How `layer` is stored, for the summary."""
    base = next((text for f in used if (text := f.label(layer, s.parts[f.key], opt, ctx))), None)
    if base is None:
        base = "sparse" if layer.weight in sparse else "float32"
    return base + "".join(f.suffix(s.parts[f.key]) for f in used)
