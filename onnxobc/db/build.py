"""Building the database: every layer at every level, solved once and stored with its losses,
analytic FLOPs and BOPs and the bytes it takes written; a rerun skips what is stored (so a
killed build resumes)."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import numpy as np
import onnx

from .. import families
from ..deadline import FAST, affordable, fast_options, mark
from ..fidelity import LossProbe
from ..families.quantize import Quantize
from ..graph.flops import macs_per_sample, output_shapes
from ..graph.heads import head_groups
from ..graph.model import external_files
from ..graph.nodes import node_name
from ..graph.single import single_layer_model
from ..options import Options
from ..prepare import smoothed, smoothing_wanted
from ..schedule import solve_all
from ..solve import Solved
from ..solver import cost
from ..timing import layer_model
from .levels import Level, check_storable
from .store import Database, fingerprint


def settings_key(prep, options: Options) -> str:
    """What the stored results depend on besides model, layer and level ("v2": the layers'
    weights include the per-channel affine steps folded into them; "v3": bytes are measured from
    the written form; "v4": additive parts and quantized factors are stored; "v5": exact
    quantization keeps each row's better of OBQ and GPTQ; "v6": losses are measured on the held-out
    samples); the smoothing the weights took, where any)."""
    o = options
    smoothed = [f"{t}:{a}" for t, a in sorted(prep.smoothing.items())]
    return fingerprint("v6", o.method, o.damp, o.symmetric, o.bias_correction, o.variance_correction, o.runtime,
                       o.holdout, *[prep.calib[k] for k in sorted(prep.calib)], *smoothed)


def for_levels(prep, options: Options, levels: list, progress=None):
    """`prep` as the database's entries for `levels` start from: with activation outliers smoothed
    into the weights (prepare.smoothed) for the levels with int8 activations, dynamic ones first,
    unless options.smooth is "off" or the runtime takes one weight grid per layer. The inputs of
    attention output projections are left alone: a head cut narrows them. Smoothing keeps the
    float model's function, so every level starts from the same model, and the layers no int8
    level takes keep their output."""
    forms = sorted((o for lv in levels if smoothing_wanted(o := level_options(options, lv))),
                   key=lambda o: o.abits != Quantize.DYNAMIC)
    if not forms or prep.smoothing:
        return prep
    by_weight = {l.weight: l for l in prep.layers}
    leave = {t for g in head_groups(prep.model, prep.layers) if g.consumer in by_weight
             for t in by_weight[g.consumer].activations}
    return smoothed(prep, forms, progress, leave)


def model_key(path) -> str:
    """The model file's bytes, and those of the external data files it names (streamed)."""
    path = pathlib.Path(path)
    model = path.read_bytes()
    parts = [model]
    for location in external_files(onnx.load_from_string(model)):
        h = hashlib.sha256()
        with open(path.parent / location, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        parts += [location, h.hexdigest()]
    return fingerprint(*parts)


def level_options(options: Options, level: Level) -> Options:
    """The options that write `level` (with the forms its families choose for the runtime, e.g.
    MatMulNBits for weight-only MatMuls on onnxruntime)."""
    return dataclasses.replace(options, **families.level_options(level, options.target))


def to_arrays(s: Solved) -> tuple:
    """(arrays, meta) for the store: Ŵ, its bias shift, and each family's parts."""
    arrays = {"weight": s.weight}
    if s.shift is not None:
        arrays["shift"] = s.shift
    meta = {}
    for f in families.FAMILIES:
        if f.key in s.parts:
            f.to_arrays(s.parts[f.key], arrays, meta)
    return arrays, meta


def from_arrays(arrays: dict, meta: dict, level: Level) -> Solved:
    """The Solved a stored entry of `level` holds."""
    parts = {f.key: p for f in families.present(level) if (p := f.from_arrays(arrays, meta)) is not None}
    return Solved(arrays["weight"], dict(meta["row"]), arrays.get("shift"), parts)


def analytic_costs(layer, level: Level, macs: int | None, solved: Solved) -> dict:
    """FLOPs and BOPs per sample: MACs × 2 and MACs × weight bits × activation bits, both scaled
    by the kept share of weights (of multiply-adds where a family says so: low-rank, codebooks)."""
    n = solved.weight.size
    density = next((d for f in families.present(level) if (d := f.density(solved.parts.get(f.key), n)) is not None),
                   float(np.count_nonzero(solved.weight)) / n)
    wbits, abits = next((b for f in families.present(level) if (b := f.bits(level))), (32, 32))
    return {"flops": None if macs is None else 2 * macs * density,
            "bops": None if macs is None else macs * wbits * abits * density, "density": density}


def written_alone(prep, layer, level: Level, solved: Solved, options: Options, input_shape):
    """`layer` alone (graph/single.py) at `input_shape`, written in `level`'s export format."""
    return layer_model(prep, layer, solved, None if level.dense else level_options(options, level), input_shape)


def file_bytes(prep, layer, level: Level, solved: Solved, options: Options) -> int:
    """The bytes `layer` takes in an output file at `level`: its one-layer model written in the
    level's format, less that model without the weight (nodes, integer codes, scales, sparse
    storage and factors all count, exactly as write() stores them)."""
    shape = [f"d{i}" for i in range(layer.kind.input_rank(layer))]  # symbolic sizes: only the bytes matter here
    bare = single_layer_model(prep.model, layer, shape)[0]
    keep = [t for t in bare.graph.initializer if t.name != layer.weight]
    del bare.graph.initializer[:]
    bare.graph.initializer.extend(keep)
    written = written_alone(prep, layer, level, solved, options, shape)
    return len(written.SerializeToString()) - len(bare.SerializeToString())


def build(prep, db: Database, model_path, levels: list, options: Options, progress=None,
          only: dict | None = None) -> dict:
    """Solve and store every (layer, level) not stored yet (of those `only`, weight → levels,
    allows the layer, where given); returns counts. Under a time budget (options.max_time), the
    layers it cannot afford are solved by the fast methods (deadline.py) and marked so; a later
    build that can afford them solves them again, exactly."""
    check_storable(levels)
    progress = progress or (lambda *a: None)
    mkey, skey = model_key(model_path), settings_key(prep, options)
    shapes = output_shapes(prep.model)
    outputs = {node_name(n): n.output[0] for n in prep.model.graph.node}
    probe = LossProbe(prep, options)
    wanted = {l.weight: levels if only is None else [lv for lv in levels if lv in only[l.weight]] for l in prep.layers}
    total = sum(len(w) for w in wanted.values())
    todo = {w: [lv for lv in lvs if not db.has(mkey, skey, w, lv.name) or fast_entry(db, mkey, skey, w, lv)]
            for w, lvs in wanted.items()}
    allotment = affordable({l.weight: sum(cost.exact_work(l.rows, l.cols, l.groups,
                                                          families.exact_passes(level_options(options, lv)))
                                          for lv in todo[l.weight] if not lv.dense) for l in prep.layers}, options)
    for w in allotment.fast:  # stays fast: what is stored fast is kept
        todo[w] = [lv for lv in todo[w] if not db.has(mkey, skey, w, lv.name)]
    skipped = total - sum(len(t) for t in todo.values())
    done = 0
    if allotment.fast:
        progress("database", skipped, total, f"the time budget affords exact solves for "
                 f"{len(prep.layers) - len(allotment.fast)} of {len(prep.layers)} layers")
    progress("database", skipped, total, "")

    def setting(layer, lv):
        opt = None if lv.dense else level_options(options, lv)
        return fast_options(opt) if opt is not None and layer.weight in allotment.fast else opt

    jobs = [(l, [setting(l, lv) for lv in todo[l.weight]]) for l in prep.layers if todo[l.weight]]
    for layer, solved, status in solve_all(prep, jobs, options):
        macs = macs_per_sample(layer, [outputs[n] for n in layer.nodes], shapes)
        for lv, s in zip(todo[layer.weight], solved):
            if layer.weight in allotment.fast and not lv.dense:
                mark(s.row, allotment, layer.weight)
                s.row["method"] = FAST
            arrays, meta = to_arrays(s)
            meta.update(row=s.row, layer_loss=s.row["layer_loss"], calib_loss=probe.loss(layer, s),
                        bytes=float(file_bytes(prep, layer, lv, s, options)), **analytic_costs(layer, lv, macs, s))
            db.put(mkey, skey, layer.weight, lv.name, arrays, meta)
            done += 1
            progress("database", done + skipped, total, f"{layer.weight} {lv.name}{status}")
    out = {"model": mkey, "settings": skey, "computed": done, "reused": skipped}
    if options.max_time is not None:
        out["time_budget"] = allotment.report()
    return out


def fast_entry(db: Database, mkey: str, skey: str, weight: str, level: Level) -> bool:
    """Whether the stored entry was solved by the fast methods for want of time."""
    meta = db.meta(mkey, skey, weight, level.name)
    return meta is not None and meta["row"].get("method") == FAST
