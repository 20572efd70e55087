"""The layers in waves for solving one after another (sequential mode): a layer is in the wave
after the last layer its input depends on, so each wave's inputs are computed by earlier waves
alone (the query, key and value projections of an attention block are one wave)."""

from __future__ import annotations

import onnx

from .nodes import node_name


def waves(model: onnx.ModelProto, layers) -> list:
    """`layers` grouped in waves, in the graph's (topological) order."""
    by_node = {n: l for l in layers for n in l.nodes}
    upstream = {}  # tensor → the layers it depends on
    depth = {}  # layer weight → its wave
    for node in model.graph.node:
        ups = set().union(*(upstream.get(x, set()) for x in node.input if x))
        layer = by_node.get(node_name(node))
        if layer is not None:
            wave = 1 + max((depth[w] for w in ups if w in depth and w != layer.weight), default=-1)
            depth[layer.weight] = max(depth.get(layer.weight, 0), wave)
            ups = ups | {layer.weight}
        for out in node.output:
            upstream[out] = ups
    out = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for l in layers:
        out[depth.get(l.weight, 0)].append(l)
    return [w for w in out if w]
