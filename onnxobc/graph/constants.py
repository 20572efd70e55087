"""Nodes that compute a constant from constants, replaced by the constant.

Paddle2ONNX adds each squeeze-excitation Conv's bias through Reshape(bias, [1, C, 1, 1]) → Add:
the Reshape runs on every call, and the Add reads a tensor that another node computes, so it
neither folds into the Conv nor lets a channel group pass it. Reshape-like ops whose inputs are
all initializers are evaluated once (onnx's reference evaluator) and become initializers; the
output holds the same values, and no constant grows (only ops that move or relabel values)."""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .nodes import subgraphs
from .write import drop_unused_initializers

FOLDABLE = {"Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten", "Identity", "Cast"}


def fold_constants(model: onnx.ModelProto) -> int:
    """Replace every FOLDABLE node of the main graph whose inputs are all initializers (not
    overridable graph inputs) and whose outputs no graph output names by initializers holding
    its outputs, in place; initializers left unread go. Returns the nodes removed."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    overridable = {i.name for i in g.input}
    outputs = {o.name for o in g.output}
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    done, read = set(), set()
    for i, node in enumerate(g.node):
        if (node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx") or subgraphs(node)
                or not node.input or any(x and (x not in inits or x in overridable) for x in node.input)
                or set(node.output) & outputs):
            continue
        for name, value in zip(node.output, _evaluate(node, inits, opsets)):
            inits[name] = numpy_helper.from_array(value, name)
            g.initializer.append(inits[name])
        done.add(i)
        read.update(node.input)
    if done:
        keep = [n for i, n in enumerate(g.node) if i not in done]
        del g.node[:]
        g.node.extend(keep)
        drop_unused_initializers(model, read)
    return len(done)


def _evaluate(node, inits: dict, opsets: list) -> list:
    """`node`'s outputs, its inputs the initializers of those names."""
    used = [x for x in node.input if x]
    graph = helper.make_graph([node], "constant", [], [helper.make_empty_tensor_value_info(o) for o in node.output],
                              [inits[x] for x in used])
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, {})
