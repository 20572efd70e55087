"""Layer groups: the weights coupled through one set of channels.

Channel c of a producer layer's output (row c of its weight) reaches, through channel-wise ops,
the input columns of c in its consumer layers. Removing the channel removes the producer's row
and bias, the channel's values in every op on the way (a BatchNormalization, a per-channel
Mul/Add, a depthwise Conv, which passes channels through), and the consumers' columns of c: a
smaller dense model. That holds only if every reader of the channels is sliced alike; where one
is not (a residual Add with another branch, a Concat, a Reshape, a graph output, an op that mixes
channels), the group says why it is blocked.

Ops are walked in the graph's (topological) order, so a tensor computed from the group's
channels on two paths (x · sigmoid(x), GELU's x · erf(x/√2)) stays aligned with them."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import numpy_helper

from .flops import output_shapes
from .fold import per_channel
from .nodes import node_name
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

    @property
    def members(self) -> list:
        """The weights of every layer whose shape a removal changes."""
        return [self.producer] + self.depthwise + [c.weight for c in self.consumers]

    def columns(self, layer) -> np.ndarray:
        """(channels, width): the view columns of consumer `layer` that read each channel."""
        per = next(c.per for c in self.consumers if c.weight == layer.weight)
        return layer.kind.input_columns(layer, per)

    def rows_kept(self, keep: np.ndarray) -> dict:
        """The output rows the producer keeps when the channels `keep` stay."""
        return {self.producer: keep}

    def cut(self, model, layers: dict, keep: np.ndarray) -> None:
        """Keep only the channels `keep` in the model (the consumers' weights are set apart)."""
        take_channels(model, self, layers, keep)


def layer_groups(model, layers) -> list:
    """The LayerGroup of every layer's output channels, in the layers' order."""
    shapes = output_shapes(model)
    by_node = {n: l for l in layers for n in l.nodes}
    return [_group(model, layer, by_node, shapes) for layer in layers]


def _group(model, producer, by_node: dict, shapes: dict) -> LayerGroup:
    group = LayerGroup(producer.weight, producer.rows * producer.groups, [], [], [])
    if len(producer.nodes) > 1:
        group.blocked = "its weight is shared by several nodes"
        return group
    if producer.groups > 1:
        group.blocked = (f"grouped Conv ({producer.groups} groups)" if not producer.kind.depthwise(producer) else
                         "a depthwise Conv passes channels through: it belongs to the group of the layer before it")
        return group
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    out = next(n for n in g.node if node_name(n) == producer.nodes[0]).output[0]
    rank = len(shapes.get(out) or ())
    if not rank:
        group.blocked = f"the shape of {out!r} is unknown"
        return group
    aligned = group.aligned
    aligned[out] = Aligned(rank, producer.kind.channel_axis(rank))
    for node in g.node:
        if any(x in aligned for x in node.input):
            group.blocked = _step(node, aligned, by_node, consts, shapes, group)
            if group.blocked:
                return group
    reached = [o.name for o in g.output if o.name in aligned]
    if reached:
        group.blocked = f"the graph output {reached[0]!r} reads it"
    elif not group.consumers:
        group.blocked = "no layer reads its channels"
    return group


def _step(node, aligned: dict, by_node: dict, consts: dict, shapes: dict, group: LayerGroup) -> str | None:
    """Follow the channels through `node`, which reads some aligned tensor; the reason it blocks
    them, or None."""
    name, op = node_name(node), node.op_type
    first = aligned.get(node.input[0])
    layer = by_node.get(name)
    if layer is not None:
        return _consumer(node, name, layer, first, aligned, group)
    others = [x for x in node.input[1:] if x]
    if op in CHANNELWISE and first is not None and all(x in consts for x in others) and (
            op == "BatchNormalization" or all(_broadcasts(consts[x], first, group.channels) for x in others)):
        group.through.append(name)
        aligned[node.output[0]] = first
        return None
    if op in BINARY:
        mine = [aligned[x] for x in node.input if x in aligned]
        rest = [x for x in node.input if x not in aligned]
        computed = [x for x in rest if x not in consts]
        if computed:
            return f"{op} {name!r} also reads {computed[0]!r}, which another path computes"
        if len(set(mine)) == 1 and all(_broadcasts(consts[x], mine[0], group.channels) for x in rest):
            group.through.append(name)
            aligned[node.output[0]] = mine[0]
            return None
    if op == "Flatten" and first is not None and first.axis == 1 and first.per == 1:
        dims = shapes.get(node.input[0]) or []
        if next((a.i for a in node.attribute if a.name == "axis"), 1) == 1 and all(d is not None for d in dims[2:]):
            group.through.append(name)
            aligned[node.output[0]] = Aligned(2, 1, int(np.prod(dims[2:], dtype=np.int64)))
            return None
    return f"{op} {name!r} mixes, joins or reshapes its channels"


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
