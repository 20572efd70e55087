"""Attention heads as removable groups: in a self-attention block as torch.onnx writes it,

    x → MatMul(W_q) [+ b_q] → Reshape(…, H, d) → Transpose ─┐
    x → MatMul(W_k) [+ b_k] → Reshape(…, H, d) → Transpose ─┴→ MatMul → [Div, Add mask] → Softmax ─┐
    x → MatMul(W_v) [+ b_v] → Reshape(…, H, d) → Transpose ────────────────────────────────────────┴→ MatMul
        → Transpose → Reshape(…, H·d) → MatMul(W_o) [+ b_o]

head h is the d outputs h·d … h·d + d − 1 of W_q, W_k and W_v and the same d inputs of W_o: removing
it removes those rows (and biases), those columns of the output projection, and one head from the
Reshape shapes. A tensor added to (or multiplying) the scores on the way to the Softmax (an
attention mask, MPNet's and T5's relative position bias, shared by every layer) may carry every
head or broadcast over them; it is expanded to the heads and the kept ones gathered, for that
block alone. Its cost is the output projection's loss with those columns removed (the head's
context is gone); query and key rows only feed that head's attention weights."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import numpy_helper

from .coupling import Consumer
from .nodes import consumers, node_name
from .slicing import take_heads

BETWEEN = {"Div", "Mul", "Add", "Softmax", "Where", "Cast"}  # ops between the score MatMul and the context MatMul


@dataclasses.dataclass
class HeadGroup:
    """The heads of one attention block, with every tensor their removal touches."""

    unit = "heads"
    align = False  # each head is already head_dim channels
    consumer: str  # the output projection's weight
    producers: list  # the query, key and value projections' weights
    channels: int  # the heads
    head_dim: int
    biases: list  # the bias Adds after the projections (node names)
    splits: list  # the Reshape nodes to (…, H, d)
    merge: str  # the Reshape node back to (…, H·d)
    blocked: str | None = None
    score_inputs: list = dataclasses.field(default_factory=list)  # (node, input index) met by the scores

    @property
    def producer(self) -> str:
        return self.producers[0]

    @property
    def consumers(self) -> list:
        return [Consumer(self.consumer, self.head_dim)]

    @property
    def members(self) -> list:
        """The weights of every layer whose shape a removal changes."""
        return self.producers + [self.consumer]

    def rows_kept(self, keep: np.ndarray) -> dict:
        """The output rows each projection keeps when the heads `keep` stay."""
        rows = (keep[:, None] * self.head_dim + np.arange(self.head_dim)).ravel()
        return {w: rows for w in self.producers}

    def cut(self, model, layers: dict, keep: np.ndarray) -> None:
        take_heads(model, self, layers, keep)


def head_groups(model, layers) -> list:
    """A HeadGroup for every self-attention block found among `layers`."""
    g = model.graph
    by_node = {n: l for l in layers for n in l.nodes}
    producer = {o: n for n in g.node for o in n.output}
    readers = consumers(g)
    inits = {t.name: t for t in g.initializer}
    out = []
    for ctx in g.node:
        if ctx.op_type != "MatMul" or node_name(ctx) in by_node or any(x in inits for x in ctx.input):
            continue
        found = _match(ctx, producer, readers, inits, by_node)
        if found is not None:
            out.append(found)
    return out


def _back(name, producer, readers, inits) -> tuple:
    """Walk back from a head tensor: (Transpose, Reshape, bias Add or None, projection MatMul), each
    read only on the way, or None."""
    t = producer.get(name)
    if t is None or t.op_type != "Transpose":
        return None
    r = producer.get(t.input[0])
    if r is None or r.op_type != "Reshape" or len(readers.get(r.output[0], [])) != 1:
        return None
    prev = producer.get(r.input[0])
    bias = None
    if prev is not None and prev.op_type == "Add" and any(x in inits for x in prev.input):
        bias = prev
        if len(readers.get(prev.output[0], [])) != 1:
            return None
        prev = producer.get(next(x for x in prev.input if x not in inits))
    if prev is None or prev.op_type != "MatMul" or len(readers.get(prev.output[0], [])) != 1:
        return None
    return t, r, bias, prev


def _perm(transpose) -> list | None:
    return next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)


def _shape(node, inits) -> np.ndarray | None:
    return numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None


def _match(ctx, producer, readers, inits, by_node) -> HeadGroup | None:
    v = _back(ctx.input[1], producer, readers, inits)
    node, path, side = producer.get(ctx.input[0]), [], []
    while node is not None and node.op_type in BETWEEN:  # back from the attention weights to the scores
        path.append(node)
        on_path = next((x for x in node.input if x not in inits and x in producer), "")
        side += [(node_name(node), i) for i, x in enumerate(node.input)
                 if x and x != on_path and (x not in inits or np.prod(inits[x].dims) > 1)]
        node = producer.get(on_path)
    if v is None or node is None or node.op_type != "MatMul" or not any(p.op_type == "Softmax" for p in path):
        return None
    q, k = (_back(x, producer, readers, inits) for x in node.input)
    if q is None or k is None:
        return None
    projections = [by_node.get(node_name(p[3])) for p in (q, k, v)]
    if any(p is None for p in projections):
        return None
    t = readers.get(ctx.output[0], [])
    merge = readers.get(t[0].output[0], []) if len(t) == 1 and t[0].op_type == "Transpose" else []
    o = readers.get(merge[0].output[0], []) if len(merge) == 1 and merge[0].op_type == "Reshape" else []
    out_layer = by_node.get(node_name(o[0])) if len(o) == 1 and o[0].op_type == "MatMul" else None
    if out_layer is None:
        return None
    shape = _shape(q[1], inits)
    if shape is None or len(shape) != 4:
        return None
    heads, d = int(shape[2]), int(shape[3])
    group = HeadGroup(out_layer.weight, [p.weight for p in projections], heads, d,
                      [node_name(p[2]) for p in (q, k, v) if p[2] is not None], [node_name(p[1]) for p in (q, k, v)],
                      node_name(merge[0]), score_inputs=side)
    if any(p.rows != heads * d or len(p.nodes) > 1 for p in projections) or out_layer.cols != heads * d:
        group.blocked = "the projections do not match the heads' shape"
    elif any(not np.array_equal(_shape(p[1], inits), shape) for p in (k, v)):
        group.blocked = "the query, key and value are split into heads differently"
    elif (_shape(merge[0], inits) is None or int(_shape(merge[0], inits)[-1]) != heads * d
          or len(out_layer.nodes) > 1):
        group.blocked = "the heads are merged by a shape that is not a constant"
    elif side and _perm(q[0]) != [0, 2, 1, 3]:
        group.blocked = "the attention scores meet another tensor and their head axis is not the second"
    return group
