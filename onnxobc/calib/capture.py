"""Hessians of every layer from calibration data: onnxruntime runs the model with each layer's
activation input exposed as an output, and each batch is folded into the layer's Hessians
(one per Conv group) right away, so memory is bounded by the Hessians, not the activations.
The same pass records the value range of any other tensors asked for; a second pass histograms
them and picks each one's int8 clipping range (for activation quantization); for the tensors
that layers read, a third can pick it by the error it puts on those layers' outputs."""

from __future__ import annotations

import numpy as np
import onnx

from ..graph.layers import weight_array
from ..protos import copy
from ..sessions import session
from ..solver import CrossAccumulator, HessianAccumulator
from .feeds import batches, model_inputs
from .ranges import FedError, Histogram


def exposing(model: onnx.ModelProto, names) -> onnx.ModelProto:
    m = copy(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    return m


MASK = "attention_mask"  # a transformer's input marking real tokens (1) and padding (0), (batch, tokens)


def passes(model: onnx.ModelProto, names: list, data: dict, batch_size: int, custom_ops, progress, feeds=False):
    """{name: value} of the tensors `names` for each batch of `data`, onnxruntime running `model`
    with them exposed ((values, feed) with `feeds`); `progress(samples)` after each batch."""
    sess = session(exposing(model, names), custom_ops=custom_ops)
    for feed in batches(data, model_inputs(model), batch_size):
        values = dict(zip(names, sess.run(names, feed)))
        yield (values, feed) if feeds else values
        if progress is not None:
            progress(len(next(iter(feed.values()))))


def real_tokens(layer, x: np.ndarray, feed: dict) -> np.ndarray:
    """A MatMul's (batch, tokens, features) input `x` without the padded tokens the feed's
    attention mask marks (their outputs are masked out downstream, so the layer need not fit
    them); any other input as it is."""
    mask = feed.get(MASK)
    if layer.op != "MatMul" or mask is None or np.ndim(mask) != 2 or x.ndim != 3 or x.shape[:2] != np.shape(mask):
        return x
    return x[np.asarray(mask) != 0]


def capture_hessians(model: onnx.ModelProto, layers, data: dict, batch_size: int = 8, observe=(),
                     custom_ops=(), progress=None, device: str = "cpu"):
    """({weight name: [HessianAccumulator per group]} summed over all nodes that use the weight,
    padded tokens left out (real_tokens), {tensor name: (min, max)} over the calibration data for
    each name in `observe`). The sums are accumulated on `device` (see HessianAccumulator)."""
    acts = sorted({a for l in layers for a in l.activations} | set(observe))
    hessians = {l.weight: [HessianAccumulator(l.cols, device) for _ in range(l.groups)] for l in layers}
    ranges = {}
    for values, feed in passes(model, acts, data, batch_size, custom_ops, progress, feeds=True):
        for l in layers:
            for act in l.activations:
                for acc, X in zip(hessians[l.weight], l.hessian_inputs(real_tokens(l, values[act], feed))):
                    acc.add_batch(X)
        for name in observe:
            v = values[name]
            lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(old[0], lo), max(old[1], hi))
    return hessians, ranges


def capture_paired(dense: onnx.ModelProto, current: onnx.ModelProto, layers, data: dict, batch_size: int = 8,
                   custom_ops=(), progress=None, device: str = "cpu") -> tuple:
    """({weight: [HessianAccumulator per group]} of each layer's inputs X̃ in `current` (a
    compression of `dense` whose layers keep their input names), {weight: [CrossAccumulator per
    group]} of X̃ against the same samples' inputs X in `dense`): both models run batch by batch."""
    acts = sorted({a for l in layers for a in l.activations})
    sessions = [session(exposing(m, acts), custom_ops=custom_ops) for m in (current, dense)]
    hessians = {l.weight: [HessianAccumulator(l.cols, device) for _ in range(l.groups)] for l in layers}
    cross = {l.weight: [CrossAccumulator(l.cols, device) for _ in range(l.groups)] for l in layers}
    for feed in batches(data, model_inputs(dense), batch_size):
        now, then = (dict(zip(acts, s.run(acts, feed))) for s in sessions)
        for l in layers:
            for act in l.activations:
                pairs = zip(hessians[l.weight], cross[l.weight], l.hessian_inputs(real_tokens(l, now[act], feed)),
                            l.hessian_inputs(real_tokens(l, then[act], feed)))
                for acc, c, X_tilde, X in pairs:
                    acc.add_batch(X_tilde)
                    c.add_batch(X_tilde, X)
        if progress is not None:
            progress(len(next(iter(feed.values()))))
    return hessians, cross


def capture_histograms(model: onnx.ModelProto, ranges: dict, data: dict, batch_size: int = 8, custom_ops=(),
                       progress=None) -> dict:
    """{tensor name: Histogram} of each tensor in `ranges` (its calibration min/max), from a pass
    over `data`."""
    hists = {n: Histogram(*ranges[n]) for n in sorted(ranges)}
    for values in passes(model, list(hists), data, batch_size, custom_ops, progress):
        for n, v in values.items():
            hists[n].add(v)
    return hists


def ranges_by_output(model: onnx.ModelProto, hists: dict, layers, data: dict, batch_size: int = 8,
                     symmetric: bool = False, custom_ops=(), progress=None) -> dict:
    """{tensor name: (lo, hi)} for each tensor of `hists` that `layers` read: among its
    candidate ranges, the one that puts the least squared error on those layers' outputs
    (calib/ranges.FedError), from a pass over `data`."""
    readers = {}
    for l in layers:
        mats = [np.asarray(m, np.float32) for m in l.matrices(weight_array(model, l.weight))]
        for act in dict.fromkeys(l.activations):
            if act in hists:
                readers.setdefault(act, []).append((l.hessian_inputs, mats))
    if not readers:
        return {}
    fed = {n: FedError(hists[n].candidates(symmetric), symmetric, readers[n]) for n in sorted(readers)}
    for values in passes(model, list(fed), data, batch_size, custom_ops, progress):
        for n, v in values.items():
            fed[n].add(v)
    return {n: f.best() for n, f in fed.items()}
