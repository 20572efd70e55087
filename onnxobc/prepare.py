"""The start of every flow: load the model, evaluate the nodes that compute constants from
constants (graph/constants.py), fold constant per-channel Mul/Add after a Conv/Gemm into it and
fuse the activations spelled out element by element (graph/fuse.py), discover its layers, split
the calibration data (a share held out to verify) (load), and capture each layer's Hessians and
input means (and, for int8 activations, the ranges of the tensors that get Q/DQ) with
onnxruntime (capture)."""

from __future__ import annotations

import dataclasses
import pathlib

import onnx

from . import families
from .calib.capture import capture_hessians, capture_histograms, ranges_by_output
from .calib.feeds import load_calibration
from .calib.smoothing import WeightGrid, choose_smoothing
from .families.quantize import Quantize
from .graph.activation_qdq import quantized_tensors
from .graph.bias import feeds_batch_norm
from .graph.constants import fold_constants
from .graph.fold import fold_input_affine, fold_output_affine
from .graph.fuse import fuse_hard_activations
from .graph.layers import discover, weight_array
from .graph.model import inputs_to_constants, load_model
from .graph.smooth import smooth, smoothable
from .memory import memory_budget, within_memory
from .options import Options
from .progress import counter, silent
from .protos import copy
from .solve import Problem


@dataclasses.dataclass
class Prepared:
    """A loaded model with its layers and calibration statistics, ready for solving."""

    src: pathlib.Path
    model: onnx.ModelProto
    layers: list
    skipped: list
    calib: dict  # the samples that calibrate
    held: dict  # the samples that verify
    hessians: dict  # weight → [HessianAccumulator per group]
    ranges: dict  # activation → (lo, hi), for int8 activations
    range_choices: dict = dataclasses.field(default_factory=dict)  # with act_ranges "auto", when they differ:
    #                                                                 {"histogram": ranges, "output": ranges}
    smoothing: dict = dataclasses.field(default_factory=dict)  # tensor → α of the outliers moved into weights
    folded: int = 0  # nodes the model lost without changing what it computes: constants computed once,
    #                  constant per-channel Mul/Add/Sub/Div folded into the layer next to them, spelled-out
    #                  activations fused
    notes: list = dataclasses.field(default_factory=list)  # what the input had that was changed or left alone


def prepare(model_path, calib, options: Options, progress=None, activation_ranges: bool | None = None,
            hessians: bool = True, model: onnx.ModelProto | None = None, range_choices: bool = False) -> Prepared:
    """Load, discover, split the calibration data (load()), then capture Hessians (unless not
    `hessians`: the stages that only write from a database) and activation ranges (when
    `activation_ranges`, by default when the options' forms need them: int8 activations).
    `model`, if given, is a model made from the one at `model_path` (which stays the dense
    reference), taken instead of it."""
    prep = load(model_path, calib, options, model)
    if smoothing_wanted(options):
        prep = smoothed(prep, [options], progress)
    return capture(prep, options, progress, activation_ranges, hessians, range_choices)


def smoothing_wanted(options: Options) -> bool:
    """Whether `options` smooth activation outliers into the weights: with int8 activations unless
    "off", layer by layer, and not on a runtime whose int8 takes one weight grid per layer (where
    moving range into the weights costs every row)."""
    return (options.abits is not None and options.smooth != "off" and options.channels is None
            and not options.per_tensor)


def smoothed(prep: Prepared, forms: list, progress=None, leave=frozenset()) -> Prepared:
    """`prep` with activation outliers moved into the weights of the MatMul/Gemm layers that read
    them (graph/smooth.py), α per tensor by calib/smoothing.py; the tensors smoothing would not
    help, and those of `leave`, are left alone. `forms`: the options of each way the layers'
    activations may be quantized (the compress options; a budget's int8 levels); a tensor is
    smoothed for the first that quantizes every layer reading it."""
    progress = progress or silent
    model = prep.model
    readers = {t: ls for t, ls in smoothable(model, [l for l in prep.layers
                                                     if any(activations_quantized(l, o) for o in forms)]).items()
               if t not in leave}
    if not readers:
        return prep
    n = len(next(iter(prep.calib.values())))
    arrays = {l.weight: weight_array(model, l.weight) for ls in readers.values() for l in ls}
    chosen, left = {}, dict(readers)
    for options in forms:
        mine = {t: ls for t, ls in left.items() if all(activations_quantized(l, options) for l in ls)}
        if not mine:
            continue
        left = {t: ls for t, ls in left.items() if t not in mine}
        dynamic = options.abits == Quantize.DYNAMIC
        chosen.update(choose_smoothing(
            model, mine, arrays, prep.calib, options.batch_size, options.smooth, dynamic,
            options.target.int8.symmetric and not dynamic, WeightGrid(options.wbits, options.symmetric,
                                                                      options.per_tensor), options.custom_ops,
            progress=counter(progress, "smooth", n, f"samples, outliers of {len(mine)} tensors"),
            tensor_progress=lambda k, total, t: progress("smooth", k, total, t)))
    if not chosen:
        prep.notes.append(f"smoothing: none of the {len(readers)} tensors that MatMul/Gemm layers read gained from it")
        return prep
    model = copy(prep.model)
    layers = [dataclasses.replace(l, activations=list(l.activations)) for l in prep.layers]
    by_weight = {l.weight: l for l in layers}
    smooth(model, {t: [by_weight[l.weight] for l in readers[t]] for t in chosen},
           {t: s for t, (_, s) in chosen.items()})
    alphas = sorted({a for a, _ in chosen.values()})
    prep.notes.append(f"smoothing: {len(chosen)} of the {len(readers)} tensors that MatMul/Gemm layers read were "
                      f"divided per channel, their range moved into the weights (α {', '.join(map(str, alphas))})")
    return dataclasses.replace(prep, model=model, layers=layers, smoothing={t: a for t, (a, _) in chosen.items()})


def rewrite(model: onnx.ModelProto) -> tuple:
    """`model` rewritten in place to compute the same with fewer nodes, as every flow starts from
    it: constants computed once, affine steps folded into the layers next to them, hard-swish
    fused. Returns (the nodes removed, notes on what changed)."""
    notes = []
    promoted = inputs_to_constants(model)
    if promoted:
        notes.append(f"{len(promoted)} initializers were also graph inputs (overridable): the output keeps them as "
                     f"constants only ({', '.join(promoted[:5])}{', …' if len(promoted) > 5 else ''})")
    folded = fold_constants(model) + fold_output_affine(model)  # a bias added through a Reshape folds too
    fused = fuse_hard_activations(model)
    if fused["nodes"]:
        kinds = " and ".join(f"{fused[k]} {k} activations" for k in ("hard-swish", "hard-sigmoid") if fused[k])
        opset = f" (the model converted from opset {fused['converted'][0]} to {fused['converted'][1]}, which HardSwish " \
                "needs)" if fused["converted"] else ""
        notes.append(f"{kinds} spelled out element by element (x · Clip(x + 3, 0, 6) / 6) were fused into "
                     f"HardSwish / HardSigmoid nodes{opset}: {fused['nodes']} nodes fewer, the same values")
    folded += fused["nodes"] + fold_input_affine(model)  # after the fusion, which needs the / 6 the fold would take
    return folded, notes


def load(model_path, calib, options: Options, model: onnx.ModelProto | None = None) -> Prepared:
    """The model loaded, folded, its activations fused and its layers discovered, the calibration
    data split; no statistics captured yet (capture() adds them)."""
    src = pathlib.Path(model_path)
    if model is None:
        model = load_model(src)
    else:
        model = copy(model)
    folded, notes = rewrite(model)
    layers, skipped = discover(model)
    layers = [l for l in layers if l.weight not in options.skip and not set(l.nodes) & set(options.skip)]
    layers, over = within_memory(layers, memory_budget(options.max_memory))
    skipped += over
    if not layers:
        raise ValueError(f"{src}: no compressible layer (Conv, Gemm, MatMul with a constant weight)"
                         + (f"; skipped: {'; '.join(f'{s.name}: {s.reason}' for s in skipped)}" if skipped else ""))
    data = load_calibration(calib, model)
    n = len(next(iter(data.values())))
    n_hold = int(round(n * options.holdout)) if n > 1 else 0
    calib_part = {k: v[: n - n_hold] for k, v in data.items()}
    held = {k: v[n - n_hold:] for k, v in data.items()} if n_hold else calib_part
    return Prepared(src, model, layers, skipped, calib_part, held, hessians={}, ranges={}, folded=folded, notes=notes)


def capture(prep: Prepared, options: Options, progress=None, activation_ranges: bool | None = None,
            hessians: bool = True, range_choices: bool = False) -> Prepared:
    """`prep` with its layers' Hessians (unless not `hessians`) and, when `activation_ranges`
    (by default when the options need them), the int8 clipping ranges of the tensors that get
    Q/DQ, captured by onnxruntime on the calibration samples. With options.act_ranges "auto",
    `range_choices` asks for both choices where they differ (the caller measures them);
    without, "auto" takes the histogram's ranges."""
    progress = progress or silent
    model, layers, n = prep.model, prep.layers, len(next(iter(prep.calib.values())))
    wanted = families.needs_ranges([options]) if activation_ranges is None else activation_ranges
    form = options.target.int8
    observe = sum(quantized_tensors(model, layers, form), []) if wanted else []
    captured = layers if hessians else []
    found, ranges, choices = {}, {}, {}
    if captured or observe:
        found, ranges = capture_hessians(model, captured, prep.calib, options.batch_size, observe, options.custom_ops,
                                         progress=counter(progress, "capture", n,
                                                          f"samples through {len(captured)} layers"),
                                         device=options.device)
    if observe:
        hists = capture_histograms(model, ranges, prep.calib, options.batch_size, options.custom_ops,
                                   progress=counter(progress, "ranges", n,
                                                    f"samples, histograms of {len(observe)} activations"))
        ranges = {t: h.best_range(form.symmetric) for t, h in hists.items()}
        if options.act_ranges == "output" or (options.act_ranges == "auto" and range_choices):
            by_output = {**ranges, **ranges_by_output(model, hists, layers, prep.calib, options.batch_size,
                                                      form.symmetric, options.custom_ops,
                                                      progress=counter(progress, "ranges", n,
                                                                       "samples, each layer input's range by its "
                                                                       "layers' output error"))}
            if options.act_ranges == "output":
                ranges = by_output
            elif by_output != ranges:
                choices = {"histogram": ranges, "output": by_output}
    return dataclasses.replace(prep, hessians=found, ranges=ranges, range_choices=choices)


def activations_quantized(layer, options: Options) -> bool:
    """Whether `options` quantize `layer`'s input activations (int8, static or dynamic)."""
    return options.abits is not None and not any(f.unfit(layer, options) for f in families.present(options))


def problem(prep: Prepared, layer) -> Problem:
    """What solving `layer` takes: its weight, its Hessians, whether a BatchNormalization reads it."""
    return Problem(layer, weight_array(prep.model, layer.weight), prep.hessians[layer.weight],
                   feeds_batch_norm(prep.model, layer))
