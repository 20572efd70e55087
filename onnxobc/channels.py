"""Structured removal (`channels`): in every channel group that can be cut (graph/coupling.py: a
layer's output channels, an MLP's hidden neurons) and every attention block (graph/heads.py: its
heads), the share of the channels or heads their consumers miss least goes. One structured ExactOBS
pass over the consumers' Hessians orders the channels (solver/structured.py: a channel's columns
removed from every consumer at once, the rest of each consumer updated optimally); the graph is
then sliced to a smaller dense model (graph/slicing.py), and each consumer's output mean shift
(W − Ŵ)·E[x] is folded into its bias. Every group is solved on the dense model's Hessians."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import solver
from .graph.bias import add_output_shift
from .graph.coupling import layer_groups
from .graph.heads import head_groups
from .graph.layers import weight_array
from .graph.slicing import set_weight
from .protos import copy
from .solve import dead_inputs, summary_row
from .solver.structured import greedy_joint, without_columns


@dataclasses.dataclass
class Cut:
    """One group's channels removed: which stay, and each consumer's narrower weight and bias shift."""

    group: object  # graph.coupling.LayerGroup
    keep: np.ndarray
    weights: dict  # consumer weight name → its new (narrower) ONNX tensor
    shifts: dict  # consumer weight name → its output mean shift (one value per output channel)
    losses: dict  # consumer weight name → (layer loss, dense output loss)
    full: dict = dataclasses.field(default_factory=dict)  # consumer weight name → Ŵ at full width, the removed
    #                                                        columns zero: what the model computes after the cut


ALIGN = 8  # channel counts kept at multiples of this: onnxruntime's NCHWc kernels block channels by 8 (AVX2)


def removed_count(channels: int, share: float, align: bool = True) -> int:
    """How many of `channels` to remove for `share`: with `align`, the count kept rounded to a
    multiple of ALIGN where there are at least 2 · ALIGN channels (odd counts fall off the fast
    kernels), else to the nearest channel (heads: each is already d channels); at least one kept."""
    kept = channels - int(round(share * channels))
    if align and channels >= 2 * ALIGN:
        kept = max(ALIGN, int(round(kept / ALIGN)) * ALIGN)
    return min(channels - max(kept, 1), channels - 1)


class Removal:
    """One structured ExactOBS pass over a group's consumers: the order in which its channels go
    (the first `steps` of them), from which the cut of any count up to `steps` follows. With
    `bias_correction` the pass runs on the inputs' centred Hessian, as each consumer's bias takes its
    mean shift: a channel that is nearly constant costs nearly nothing to remove. `fitted`: weight →
    (W', accumulator of the inputs X̃) of consumers refitted to the inputs of a cut model (recut.py),
    solved from W' on X̃; the others from their dense weight on the dense inputs."""

    def __init__(self, prep, group, steps: int, damp: float, bias_correction: bool = True, fitted=None):
        layers = {l.weight: l for l in prep.layers}
        self.group, self.problems, self.views = group, [], []
        for c in group.consumers:
            layer = layers[c.weight]
            (W,) = layer.matrices(weight_array(prep.model, layer.weight))
            dense = prep.hessians[layer.weight][0]
            start, acc = (fitted or {}).get(layer.weight, (W, dense))
            Wp, H = solver.prepare(start, solver.centered(acc.hessian, acc.mean) if bias_correction else acc.hessian,
                                   damp)
            self.problems.append((Wp, H, layer.kind.input_columns(layer, c.per)))
            self.views.append((layer, c, W.astype(np.float64) @ dense.mean, acc.mean, solver.layer_loss(W, 0, dense.hessian)))
        self.order, _ = greedy_joint(self.problems, steps)

    def cut(self, count: int) -> Cut:
        """The first `count` channels of the order removed, each consumer updated optimally."""
        removed = np.sort(self.order[:count])
        keep = np.setdiff1d(np.arange(self.group.channels), removed)
        cut = Cut(self.group, keep, {}, {}, {})
        for (Wp, H, cols), (layer, c, out_mean, in_mean, energy) in zip(self.problems, self.views):
            gone = cols[removed].ravel()
            W_hat = without_columns(Wp, H, gone)
            kept_cols = np.setdiff1d(np.arange(layer.cols), gone)
            narrow = layer.kind.with_inputs(layer, len(keep), c.per)
            cut.weights[layer.weight] = narrow.weight_from([W_hat[:, kept_cols].astype(np.float32)])
            cut.full[layer.weight] = layer.weight_from([W_hat.astype(np.float32)])
            cut.shifts[layer.weight] = out_mean - W_hat @ in_mean  # the dense output mean, kept
            cut.losses[layer.weight] = (solver.layer_loss(Wp, W_hat, H), energy)
        return cut


def plan_cut(prep, group, share: float, damp: float, bias_correction: bool = True) -> Cut | None:
    """The channels of `group` to remove (removed_count of them) and what that does to its
    consumers; None when none goes."""
    k = removed_count(group.channels, share, align=group.align)
    return Removal(prep, group, k, damp, bias_correction).cut(k) if k >= 1 else None


def stand_in_cut(prep, group, count: int) -> Cut:
    """`count` channels of `group` removed with no solve (the last ones, the consumers' columns
    merely dropped): the shapes and so the time of a cut, not its weights."""
    layers = {l.weight: l for l in prep.layers}
    keep = np.arange(group.channels - count)
    cut = Cut(group, keep, {}, {}, {})
    for c in group.consumers:
        layer = layers[c.weight]
        (W,) = layer.matrices(weight_array(prep.model, layer.weight))
        kept_cols = layer.kind.input_columns(layer, c.per)[keep].ravel()
        narrow = layer.kind.with_inputs(layer, len(keep), c.per)
        cut.weights[layer.weight] = narrow.weight_from([W[:, np.sort(kept_cols)]])
    return cut


def removable_groups(model, layers) -> list:
    """The channel groups and the attention blocks' head groups of `layers` (a projection whose
    heads are a group is not also a channel group)."""
    heads = head_groups(model, layers)
    in_heads = {w for h in heads if not h.blocked for w in h.producers}
    return [g for g in layer_groups(model, layers) if g.producer not in in_heads] + heads


def plan_cuts(prep, share: float, damp: float = 0.01, bias_correction: bool = True, progress=None) -> tuple:
    """(cuts, notes): `share` of the channels of every group that can be cut, solved on the dense
    model's inputs. Layers whose inputs were all zero on the calibration data are not cut into."""
    progress = progress or (lambda *a: None)
    groups = removable_groups(prep.model, prep.layers)
    cuts = []
    progress("channels", 0, len(groups), "")
    for i, group in enumerate(groups):
        if not group.blocked and any(c.weight not in prep.hessians or dead_inputs(prep.hessians[c.weight])
                                     for c in group.consumers):
            group.blocked = "a layer that reads it is left as it is (skipped, or its inputs are all zero)"
        if not group.blocked:
            cut = plan_cut(prep, group, share, damp, bias_correction)
            if cut is not None:
                cuts.append(cut)
        progress("channels", i + 1, len(groups), group.producer)
    # a depthwise Conv's or a gate's channels are cut with the group they pass through or scale: not kept
    inside = {w for g in groups if not g.blocked for w in g.members
              if w != g.producer and w not in {c.weight for c in g.consumers}}
    return cuts, [f"{g.unit} of {g.producer} kept: {g.blocked}" for g in groups if g.blocked and g.producer not in inside]


def apply_cuts(model, layers: list, cuts: list, bias_correction: bool = True, shifts: dict | None = None) -> tuple:
    """(a copy of `model` with every cut of `cuts` made, weight → the output rows each layer that
    lost some keeps); with `bias_correction` each consumer's mean shift is folded into its bias, as
    are `shifts` (weight → a shift of each of its output channels at full width) of other layers."""
    layers = {l.weight: l for l in layers}
    model = copy(model)
    for cut in cuts:  # the consumers' new columns first (all rows), then rows and channels go
        for name, value in cut.weights.items():
            set_weight(model, name, value)
    rows_kept = {}
    for cut in cuts:
        cut.group.cut(model, layers, cut.keep)
        rows_kept.update(cut.group.rows_kept(cut.keep))
    if bias_correction:
        for name, shift in [kv for cut in cuts for kv in cut.shifts.items()] + list((shifts or {}).items()):
            layer = layers[name]
            if name in rows_kept:  # the layer lost output channels of its own
                shift = shift[rows_kept[name]]
                layer = _with_rows(layer, len(shift))
            add_output_shift(model, layer, shift)
    return model, rows_kept


def _with_rows(layer, rows: int):
    shape = list(layer.weight_shape)
    shape[layer.output_axis] = rows
    return dataclasses.replace(layer, weight_shape=tuple(shape))


def channel_rows(prep, cuts: list, rows_kept: dict) -> list:
    """A summary row per layer the removal changed."""
    losses = {name: v for cut in cuts for name, v in cut.losses.items()}
    out = []
    for layer in prep.layers:
        if layer.weight not in losses and layer.weight not in rows_kept:
            continue
        loss, dense = losses.get(layer.weight, (0.0, 0.0))
        notes = []
        if layer.weight in rows_kept:
            notes.append(f"{len(rows_kept[layer.weight])} of {layer.rows * layer.groups} output channels kept")
        cut = next((c for c in cuts if layer.weight in c.weights), None)
        if cut is not None:
            unit = "input channels" if cut.group.unit == "channels" else cut.group.unit
            notes.append(f"{len(cut.keep)} of {cut.group.channels} {unit} kept")
        row = summary_row(layer, weight_array(prep.model, layer.weight), loss, loss / dense if dense > 0 else 0.0,
                          "; ".join(notes))
        row.update(sparsity=0.0, storage="float32, smaller", applied=True)
        out.append(row)
    return out
