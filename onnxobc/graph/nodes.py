"""Node-level helpers shared by the graph edits: names, consumers, removal, bias inputs."""

from __future__ import annotations

import onnx


def node_name(node) -> str:
    """A node's name, or its first output where it has none (how layers name their nodes)."""
    return node.name or node.output[0]


def subgraphs(node) -> list:
    """The graphs a node holds as attributes (If branches, Loop and Scan bodies)."""
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)]


def consumers(graph: onnx.GraphProto) -> dict:
    """{tensor: [node reading it, once per input slot]}."""
    out = {}
    for n in graph.node:
        for x in n.input:
            out.setdefault(x, []).append(n)
    return out


def remove_nodes(graph: onnx.GraphProto, keys: set) -> None:
    """Drop the nodes whose (op_type, first output) is in `keys`, in place."""
    keep = [n for n in graph.node if (n.op_type, n.output[0]) not in keys]
    del graph.node[:]
    graph.node.extend(keep)


def set_bias(node, name: str) -> None:
    """Make `name` the third input (the bias of a Conv, Gemm's C) of `node`."""
    if len(node.input) == 2:
        node.input.append(name)
    else:
        node.input[2] = name


def replace_initializer(graph: onnx.GraphProto, name: str, tensors: list) -> None:
    """Remove initializer `name` and append `tensors`, the others kept in place (not copied:
    rebuilding the list would copy every weight of the model)."""
    del graph.initializer[next(i for i, t in enumerate(graph.initializer) if t.name == name)]
    graph.initializer.extend(tensors)
