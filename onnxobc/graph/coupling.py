"""Layer groups: the weights coupled through one set of channels.

Channel c of a producer layer's output (row c of its weight) reaches, through channel-wise ops,
the input columns of c in its consumer layers. Removing the channel removes the producer's row
and bias, the channel's values in every op on the way (a BatchNormalization, a per-channel
Mul/Add, a depthwise Conv, which passes channels through), and the consumers' columns of c: a
smaller dense model. That holds only if every reader of the channels is sliced alike; where one
is not (a residual Add with another branch, a Concat, a Reshape, a graph output, an op that mixes
channels), the group says why it is blocked.

Ops are walked in the graph's (topological) order, so a tensor computed from the group's
channels on two paths (x · sigmoid(x), GELU's x · erf(x/√2)) stays aligned with them.

A squeeze-excitation block multiplies the channels by a gate that another layer makes, one value
per channel: x · HardSigmoid(Conv(Relu(Conv(GlobalAveragePool(x))))). The gate's Conv has a row
per channel of x, so its rows go with the channels (a second producer of the group), and the
first Conv, which reads the pooled channels, is a consumer like any other. A gated linear unit
(a · σ(b), SwiGLU's up · SiLU(gate)) is the same: two layers whose rows go together."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import numpy_helper

from .flops import output_shapes
from .fold import per_channel
from .nodes import consumers, node_name
from .slicing import take_channels

# ops whose output channel c depends only on input channel c (their other inputs constant)
CHANNELWISE = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Elu", "Selu",
               "Softplus", "Gelu", "Erf", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool",
               "GlobalMaxPool", "BatchNormalization", "Neg", "Abs", "Sqrt", "Exp", "Cast"}
BINARY = {"Mul", "Add", "Sub", "Div"}


@dataclasses.dataclass(frozen=True)
class Aligned:
    """A tensor that carries the group's channels: along `axis` of its `rank` axes, each channel
    `per` consecutive entries (more than 1 after a Flatten of H × W positions)."""

    rank: int
    axis: int
    per: int = 1


@dataclasses.dataclass
class Consumer:
    weight: str  # the consumer layer
    per: int  # its columns per channel where a Flatten spread each channel over positions


@dataclasses.dataclass
class LayerGroup:
    """A producer layer's output channels with everything that reads them."""

    unit = "channels"  # what a removal removes
    align = True  # kept counts may be rounded to kernel-friendly multiples
    producer: str  # the producer layer's weight
    channels: int
    consumers: list  # Consumer per layer whose input columns read the channels
    through: list  # nodes on the way, each sliced alike (BatchNormalization, Relu, a per-channel Mul, …)
    depthwise: list  # weights of depthwise Convs on the way (their channels go too)
    blocked: str | None = None  # why the channels cannot be removed; None when they can
    aligned: dict = dataclasses.field(default_factory=dict)  # tensor → Aligned: every tensor carrying the channels
    gates: list = dataclasses.field(default_factory=list)  # weights of the layers that make a gate on the channels

    @property
    def members(self) -> list:
        """The weights of every layer whose shape a removal changes."""
        return [self.producer] + self.gates + self.depthwise + [c.weight for c in self.consumers]

    def columns(self, layer) -> np.ndarray:
        """(channels, width): the view columns of consumer `layer` that read each channel."""
        per = next(c.per for c in self.consumers if c.weight == layer.weight)
        return layer.kind.input_columns(layer, per)

    def rows_kept(self, keep: np.ndarray) -> dict:
        """The output rows the producer (and each gate's layer) keeps when the channels `keep` stay."""
        return {w: keep for w in [self.producer] + self.gates}

    def cut(self, model, layers: dict, keep: np.ndarray) -> None:
        """Keep only the channels `keep` in the model (the consumers' weights are set apart)."""
        take_channels(model, self, layers, keep)


@dataclasses.dataclass
class _Graph:
    """What a walk looks up: the layers by node, the constants, the shapes, who makes and reads each tensor."""

    by_node: dict
    consts: dict
    shapes: dict
    made_by: dict
    readers: dict
    outputs: set


def layer_groups(model, layers) -> list:
    """The LayerGroup of every layer's output channels, in the layers' order. A layer whose rows
    make a gate on another group's channels is cut with that group, not by itself."""
    g = model.graph
    graph = _Graph({n: l for l in layers for n in l.nodes}, {t.name: t for t in g.initializer}, output_shapes(model),
                   {o: n for n in g.node for o in n.output}, consumers(g), {o.name for o in g.output})
    groups = [_group(model, layer, graph) for layer in layers]
    gating = {}  # where two layers' outputs gate each other (a · σ(b)), the first one's group holds both
    for group in groups:
        if not group.blocked and group.producer not in gating:
            gating.update({w: group.producer for w in group.gates})
    for group in groups:
        if group.producer in gating:
            group.blocked = f"its rows make a gate on the channels of {gating[group.producer]!r}: cut with them"
            group.consumers, group.gates = [], []
    return groups


def _group(model, producer, graph: _Graph) -> LayerGroup:
    group = LayerGroup(producer.weight, producer.rows * producer.groups, [], [], [])
    if len(producer.nodes) > 1:
        group.blocked = "its weight is shared by several nodes"
        return group
    if producer.groups > 1:
        group.blocked = (f"grouped Conv ({producer.groups} groups)" if not producer.kind.depthwise(producer) else
                         "a depthwise Conv passes channels through: it belongs to the group of the layer before it")
        return group
    g = model.graph
    out = next(n for n in g.node if node_name(n) == producer.nodes[0]).output[0]
    rank = len(graph.shapes.get(out) or ())
    if not rank:
        group.blocked = f"the shape of {out!r} is unknown"
        return group
    aligned = group.aligned
    aligned[out] = Aligned(rank, producer.kind.channel_axis(rank))
    for node in g.node:
        if any(x in aligned for x in node.input):
            group.blocked = _step(node, aligned, graph, group)
            if group.blocked:
                return group
    reached = [o.name for o in g.output if o.name in aligned]
    if reached:
        group.blocked = f"the graph output {reached[0]!r} reads it"
    elif not group.consumers:
        group.blocked = "no layer reads its channels"
    return group


def _step(node, aligned: dict, graph: _Graph, group: LayerGroup) -> str | None:
    """Follow the channels through `node`, which reads some aligned tensor; the reason it blocks
    them, or None."""
    name, op = node_name(node), node.op_type
    first = aligned.get(node.input[0])
    layer = graph.by_node.get(name)
    if layer is not None:
        return _consumer(node, name, layer, first, aligned, group)
    if first is not None and _channelwise(node, node.input[0], first, graph.consts, group.channels):
        group.through.append(name)
        aligned[node.output[0]] = first
        return None
    if op in BINARY:
        mine = [aligned[x] for x in node.input if x in aligned]
        rest = [x for x in node.input if x not in aligned]
        computed = [x for x in rest if x not in graph.consts]
        if (op == "Mul" and len(computed) == 1 and len(rest) == 1 and len(set(mine)) == 1
                and _gate(computed[0], mine[0], aligned, graph, group)):
            computed = []
        if computed:
            return f"{op} {name!r} also reads {computed[0]!r}, which another path computes"
        if len(set(mine)) == 1 and all(_broadcasts(graph.consts[x], mine[0], group.channels) for x in rest
                                       if x not in aligned):
            group.through.append(name)
            aligned[node.output[0]] = mine[0]
            return None
    if op == "Flatten" and first is not None and first.axis == 1 and first.per == 1:
        dims = graph.shapes.get(node.input[0]) or []
        if next((a.i for a in node.attribute if a.name == "axis"), 1) == 1 and all(d is not None for d in dims[2:]):
            group.through.append(name)
            aligned[node.output[0]] = Aligned(2, 1, int(np.prod(dims[2:], dtype=np.int64)))
            return None
    return f"{op} {name!r} mixes, joins or reshapes its channels"


def _channelwise(node, source: str, x: Aligned, consts: dict, channels: int) -> bool:
    """Whether `node`'s output channel c depends only on channel c of its input `source` (aligned
    as `x`): a channel-wise op reading it first, its other inputs constants per channel or one
    value, or a Mul/Add/Sub/Div of it, in either place, with such a constant."""
    others = [y for y in node.input if y and y != source]
    if not all(y in consts for y in others):
        return False
    if node.op_type in BINARY:
        return len(others) == 1 and _broadcasts(consts[others[0]], x, channels)
    if node.op_type not in CHANNELWISE or node.input[0] != source:
        return False
    return node.op_type == "BatchNormalization" or all(_broadcasts(consts[y], x, channels) for y in others)


def _gate(tensor: str, to: Aligned, aligned: dict, graph: _Graph, group: LayerGroup) -> bool:
    """Whether `tensor`, which multiplies the group's channels (aligned as `to`), is a gate made
    from one layer's output rows alone, a row per channel, through channel-wise ops (a bias, a
    HardSigmoid), each tensor on the way read by the next step only. If so, that layer joins the
    group's gates and the way is aligned with the channels."""
    way = []
    while True:
        node = graph.made_by.get(tensor)
        if node is None or tensor in graph.outputs or len(graph.readers.get(tensor, [])) != 1:
            return False
        layer = graph.by_node.get(node_name(node))
        if layer is not None:
            break
        computed = [x for x in node.input if x and x not in graph.consts]
        if len(computed) != 1 or not _channelwise(node, computed[0], to, graph.consts, group.channels):
            return False
        way.append(node)
        tensor = computed[0]
    rank = len(graph.shapes.get(tensor) or ())
    if (len(layer.nodes) > 1 or layer.groups > 1 or layer.rows != group.channels or layer.weight in group.members
            or to.per != 1 or Aligned(rank, layer.kind.channel_axis(rank)) != to):
        return False
    group.gates.append(layer.weight)
    aligned[tensor] = to
    for step in reversed(way):
        group.through.append(node_name(step))
        aligned[step.output[0]] = to
    return True


def _consumer(node, name: str, layer, first, aligned: dict, group: LayerGroup) -> str | None:
    """A layer reading the channels: a consumer, or a depthwise Conv they pass through."""
    if first is None or any(x in aligned for x in node.input[1:]):
        return f"{node.op_type} {name!r} reads it as a weight"
    if first.axis != layer.kind.channel_axis(first.rank):
        return f"{node.op_type} {name!r} reads its channels along another axis"
    if layer.kind.depthwise(layer) and layer.groups == group.channels and first.per == 1:
        group.depthwise.append(layer.weight)
        aligned[node.output[0]] = first
        return None
    if layer.groups > 1:
        return f"grouped Conv {name!r} reads it"
    if len(layer.nodes) > 1:
        return f"{node.op_type} {name!r} shares its weight with other nodes"
    if layer.cols % first.per or layer.kind.input_columns(layer, first.per).shape[0] != group.channels:
        return f"{node.op_type} {name!r} reads more than its channels"
    group.consumers.append(Consumer(layer.weight, first.per))
    return None


def _broadcasts(tensor, to: Aligned, channels: int) -> bool:
    """Whether a constant, broadcast against an aligned tensor, varies at most along its channels."""
    return per_channel(numpy_helper.to_array(tensor), to.rank, channels, to.axis) is not None
