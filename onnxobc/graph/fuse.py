"""Activations that exporters spell out element by element, fused into the one node onnxruntime
runs as one kernel. Paddle2ONNX (PP-OCR's models) and older PyTorch exports write hard-swish as
x · Clip(x + 3, 0, 6) / 6: four passes over the activation (Add, Clip, Mul, Div) where HardSwish
(opset 14) is one pass; a model below opset 14 is converted for it, and where that fails
x · HardSigmoid(x) (any opset) takes two; hard-sigmoid alone, Clip(x + 3, 0, 6) / 6, becomes
HardSigmoid. The values are the same up to float rounding:
Clip(x + 3, 0, 6) / 6 = max(0, min(1, x/6 + 1/2)) = HardSigmoid(x; α = 1/6, β = 1/2).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .model import constants_to_initializers
from .nodes import consumers as consumers_of
from .qdq import ensure_opset
from .write import drop_unused_initializers

HARD_SWISH_OPSET = 14


def _scalar(inits: dict, name: str) -> float | None:
    t = inits.get(name)
    if t is None:
        return None
    v = numpy_helper.to_array(t)
    return float(v.reshape(-1)[0]) if v.size == 1 and np.issubdtype(v.dtype, np.floating) else None


def _clip_bounds(inits: dict, node) -> tuple:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "min" in attrs or "max" in attrs:  # opset < 11
        return attrs.get("min"), attrs.get("max")
    bounds = [_scalar(inits, node.input[i]) if len(node.input) > i and node.input[i] else None for i in (1, 2)]
    return tuple(bounds)


def _by_constant(inits: dict, node, op: str, value: float) -> str | None:
    """The other input of `node` where it is `op` with the constant `value` (Div: as divisor)."""
    if node.op_type != op or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
        return None
    for k in ((1,) if op == "Div" else (0, 1)):
        v = _scalar(inits, node.input[k])
        if v is not None and np.isclose(v, value, rtol=1e-6, atol=0.0):
            return node.input[1 - k]
    return None


def _sixth(inits: dict, node) -> str | None:
    """The input of `node` where it divides by 6 or multiplies by 1/6."""
    return _by_constant(inits, node, "Div", 6.0) or _by_constant(inits, node, "Mul", 1.0 / 6.0)


def _patterns(model: onnx.ModelProto) -> list:
    """(the nodes of each pattern in order, x, whether it is hard-swish) where nothing else reads
    the tensors in between."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers = consumers_of(g)
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}

    def only_reader(tensor):
        users = readers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    found = []
    for clip in g.node:
        if clip.op_type != "Clip" or clip.domain not in ("", "ai.onnx") or _clip_bounds(inits, clip) != (0.0, 6.0):
            continue
        add = producer.get(clip.input[0])
        x = add is not None and only_reader(add.output[0]) is clip and _by_constant(inits, add, "Add", 3.0)
        after = only_reader(clip.output[0])
        if not x or after is None:
            continue
        if _sixth(inits, after) == clip.output[0]:  # Clip(x + 3, 0, 6) / 6, maybe then · x
            last = only_reader(after.output[0])
            swish = last is not None and last.op_type == "Mul" and sorted(last.input) == sorted([x, after.output[0]])
            found.append(([add, clip, after] + [last] * swish, x, swish))
        elif after.op_type == "Mul" and sorted(after.input) == sorted([x, clip.output[0]]):  # x · Clip(…), then / 6
            last = only_reader(after.output[0])
            if last is not None and _sixth(inits, last) == after.output[0]:
                found.append(([add, clip, after, last], x, True))
    return found


def _opset(model: onnx.ModelProto) -> int:
    return max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] + [1])


def fuse_hard_activations(model: onnx.ModelProto) -> dict:
    """Replace each x · Clip(x + 3, 0, 6) / 6 (the product and the division in either order,
    / 6 or · 1/6) by HardSwish(x), and each Clip(x + 3, 0, 6) / 6 left by HardSigmoid(x), in
    place, where nothing else (no other node, no graph output) reads the tensors in between. A
    model below opset 14 with a hard-swish is converted to 14 (onnx's version converter) for
    HardSwish; where that fails, x · HardSigmoid(x) stands in. Returns {"hard-swish": how many,
    "hard-sigmoid": how many, "nodes": how many nodes fewer, "converted": (from, to) opset or
    None}."""
    found, converted = _patterns(model), None
    if any(swish for *_, swish in found) and _opset(model) < HARD_SWISH_OPSET:
        before = _opset(model)
        try:
            model.CopyFrom(ensure_opset(model, HARD_SWISH_OPSET))
            constants_to_initializers(model.graph)  # the converter writes new constants (a Clip's bounds) as nodes
            converted = (before, _opset(model))
            found = _patterns(model)
        except ValueError:
            pass  # it stays at its opset: x · HardSigmoid(x)
    g = model.graph
    inits = {t.name for t in g.initializer}
    opset = _opset(model)
    replaced, removed, constants = {}, set(), set()  # id(last node of a pattern) → its new nodes
    for pattern, x, swish in found:
        out, name = pattern[-1].output[0], pattern[-1].name or pattern[-1].output[0]
        if not swish:
            new = [helper.make_node("HardSigmoid", [x], [out], name=name, alpha=1.0 / 6.0, beta=0.5)]
        elif opset >= HARD_SWISH_OPSET:
            new = [helper.make_node("HardSwish", [x], [out], name=name)]
        else:
            gate = f"{out}.hard_sigmoid"
            new = [helper.make_node("HardSigmoid", [x], [gate], name=f"{name}.hard_sigmoid", alpha=1.0 / 6.0, beta=0.5),
                   helper.make_node("Mul", [x, gate], [out], name=name)]
        replaced[id(pattern[-1])] = new
        removed |= {id(n) for n in pattern[:-1]}
        constants |= {i for n in pattern for i in n.input if i in inits}
    counts = {"hard-swish": sum(s for *_, s in found), "hard-sigmoid": sum(not s for *_, s in found),
              "converted": converted}
    if not replaced:
        return {**counts, "nodes": 0}
    nodes, before = [], len(g.node)
    for n in g.node:  # each pattern's nodes go; the fused ones take the last one's place, after x is made
        if id(n) not in removed:
            nodes += replaced.get(id(n), [n])
    del g.node[:]
    g.node.extend(nodes)
    drop_unused_initializers(model, among=constants)
    return {**counts, "nodes": before - len(nodes)}
