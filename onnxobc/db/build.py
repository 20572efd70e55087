"""Building the database: every layer at every level, solved once and stored with its losses,
analytic FLOPs and BOPs and the bytes it takes written; a rerun skips what is stored (so a
killed build resumes)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..graph.flops import macs_per_sample, output_shapes
from ..graph.nodes import node_name
from ..graph.single import single_layer_model
from ..pipeline import Options, Prepared, Solved, solve_all, write
from ..solver import UniformGrid, ValueGrid
from .levels import Level
from .probe import LossProbe
from .store import Database, fingerprint


def settings_key(prep: Prepared, options: Options) -> str:
    """What the stored results depend on besides model, layer and level ("v2": the layers'
    weights include the per-channel affine steps folded into them; "v3": bytes are measured from
    the written form; "v4": additive parts and quantized factors are stored)."""
    o = options
    return fingerprint("v4", o.method, o.damp, o.symmetric, o.bias_correction, o.variance_correction, o.runtime,
                       o.holdout, *[prep.calib[k] for k in sorted(prep.calib)])


def model_key(path) -> str:
    with open(path, "rb") as f:
        return fingerprint(f.read())


def level_options(options: Options, level: Level) -> Options:
    """The pipeline options that write `level`: on onnxruntime, weight-only MatMuls go to its
    MatMulNBits kernel (the form it runs fast)."""
    nbits = (options.runtime == "onnxruntime" and level.wbits is not None and not level.abits and not level.outliers
             and level.rank is None and level.plus_rank is None)
    return dataclasses.replace(options, **level.options(), matmulnbits=nbits)


def to_arrays(s: Solved) -> tuple:
    """(arrays, meta) for the store: Ŵ, its bias shift, and each group's stored parts."""
    arrays = {"weight": s.weight}
    if s.shift is not None:
        arrays["shift"] = s.shift
    meta = {}
    uniform = None
    if s.factors is not None:
        for g, (A, B) in enumerate(s.factors):
            arrays[f"factor_a{g}"], arrays[f"factor_b{g}"] = A, B
        meta = {"groups": len(s.factors), "low_rank": True}
        for g, grids in enumerate(s.factor_grids or []):
            for which, grid in zip("ab", grids):
                arrays[f"factor_{which}_scale{g}"], arrays[f"factor_{which}_zero{g}"] = grid.scale, grid.zero
            uniform = grids[0]
    elif s.codes is not None and isinstance(s.grids[0], ValueGrid):
        for g, (c, grid) in enumerate(zip(s.codes, s.grids)):
            arrays[f"codes{g}"], arrays[f"values{g}"] = c.astype(np.uint8), grid.values
        meta = {"groups": len(s.codes), "codebook": True}
    elif s.codes is not None:
        for g, (c, grid) in enumerate(zip(s.codes, s.grids)):
            arrays[f"codes{g}"], arrays[f"scale{g}"], arrays[f"zero{g}"] = c.astype(np.int8), grid.scale, grid.zero
        meta, uniform = {"groups": len(s.codes)}, s.grids[0]
    if uniform is not None:
        meta.update(qmin=uniform.qmin, qmax=uniform.qmax, bits=uniform.bits, symmetric=uniform.symmetric)
    for g, part in enumerate(s.sparse or []):
        arrays[f"sparse{g}"] = part
    for g, (A, B) in enumerate(s.plus or []):
        arrays[f"plus_a{g}"], arrays[f"plus_b{g}"] = A, B
    if s.sparse or s.plus:
        meta["groups"] = len(s.sparse or s.plus)
    return arrays, meta


def from_arrays(arrays: dict, meta: dict) -> Solved:
    codes = grids = factors = factor_grids = None
    groups = range(meta.get("groups", 0))

    def uniform(scale, zero):
        return UniformGrid(scale, zero, meta["qmin"], meta["qmax"], meta["bits"], meta["symmetric"])

    if meta.get("low_rank"):
        factors = [(arrays[f"factor_a{g}"], arrays[f"factor_b{g}"]) for g in groups]
        if "factor_a_scale0" in arrays:
            factor_grids = [tuple(uniform(arrays[f"factor_{w}_scale{g}"], arrays[f"factor_{w}_zero{g}"]) for w in "ab")
                            for g in groups]
    elif meta.get("codebook"):
        codes = [arrays[f"codes{g}"].astype(np.int32) for g in groups]
        grids = [ValueGrid(arrays[f"values{g}"]) for g in groups]
    elif "codes0" in arrays:
        codes = [arrays[f"codes{g}"].astype(np.int32) for g in groups]
        grids = [uniform(arrays[f"scale{g}"], arrays[f"zero{g}"]) for g in groups]
    sparse = [arrays[f"sparse{g}"] for g in groups] if "sparse0" in arrays else None
    plus = [(arrays[f"plus_a{g}"], arrays[f"plus_b{g}"]) for g in groups] if "plus_a0" in arrays else None
    return Solved(arrays["weight"], dict(meta["row"]), arrays.get("shift"), codes, grids, factors, sparse, factor_grids,
                  plus)


def analytic_costs(layer, level: Level, macs: int | None, solved: Solved) -> dict:
    """FLOPs and BOPs per sample: MACs × 2 and MACs × weight bits × activation bits, both scaled
    by the kept share of weights (of multiply-adds for low-rank)."""
    n = solved.weight.size
    density = float(np.count_nonzero(solved.weight)) / n
    if solved.factors is not None:
        density = sum(A.size + B.size for A, B in solved.factors) / n
    elif level.codebook is not None:
        density = 1.0  # the weight is rebuilt in float: every multiply-add stays
    wbits, abits = level.wbits or 32, level.abits or 32
    return {"flops": None if macs is None else 2 * macs * density,
            "bops": None if macs is None else macs * wbits * abits * density, "density": density}


def written_alone(prep: Prepared, layer, level: Level, solved: Solved, options: Options, input_shape):
    """`layer` alone (graph/single.py) at `input_shape`, written in `level`'s export format."""
    model, view = single_layer_model(prep.model, layer, input_shape)
    if level.dense:
        return model
    node = model.graph.node[0]
    alone = dataclasses.replace(prep, model=model, layers=[view],
                                ranges={node.input[0]: (-1.0, 1.0), node.output[0]: (-1.0, 1.0)})
    return write(alone, {layer.weight: dataclasses.replace(solved, row=dict(solved.row))},
                 {layer.weight: level_options(options, level)})


def file_bytes(prep: Prepared, layer, level: Level, solved: Solved, options: Options) -> int:
    """The bytes `layer` takes in an output file at `level`: its one-layer model written in the
    level's format, less that model without the weight (nodes, integer codes, scales, sparse
    storage and factors all count, exactly as write() stores them)."""
    rank = 2 + len(layer.kernel) if layer.op == "Conv" else 2  # symbolic sizes: only the bytes matter here
    shape = [f"d{i}" for i in range(rank)]
    bare = single_layer_model(prep.model, layer, shape)[0]
    keep = [t for t in bare.graph.initializer if t.name != layer.weight]
    del bare.graph.initializer[:]
    bare.graph.initializer.extend(keep)
    written = written_alone(prep, layer, level, solved, options, shape)
    return len(written.SerializeToString()) - len(bare.SerializeToString())


def build(prep: Prepared, db: Database, model_path, levels: list, options: Options, progress=None) -> dict:
    """Solve and store every (layer, level) not stored yet; returns counts."""
    progress = progress or (lambda *a: None)
    mkey, skey = model_key(model_path), settings_key(prep, options)
    shapes = output_shapes(prep.model)
    outputs = {node_name(n): n.output[0] for n in prep.model.graph.node}
    probe = LossProbe(prep, options)
    total = len(prep.layers) * len(levels)
    todo = {l.weight: [lv for lv in levels if not db.has(mkey, skey, l.weight, lv.name)] for l in prep.layers}
    skipped = total - sum(len(t) for t in todo.values())
    done = 0
    progress("database", skipped, total, "")
    jobs = [(l, [None if lv.dense else level_options(options, lv) for lv in todo[l.weight]]) for l in prep.layers
            if todo[l.weight]]
    for layer, solved, status in solve_all(prep, jobs, options):
        macs = macs_per_sample(layer, [outputs[n] for n in layer.nodes], shapes)
        for lv, s in zip(todo[layer.weight], solved):
            arrays, meta = to_arrays(s)
            meta.update(row=s.row, layer_loss=s.row["layer_loss"], calib_loss=probe.loss(layer, s),
                        bytes=float(file_bytes(prep, layer, lv, s, options)), **analytic_costs(layer, lv, macs, s))
            db.put(mkey, skey, layer.weight, lv.name, arrays, meta)
            done += 1
            progress("database", done + skipped, total, f"{layer.weight} {lv.name}{status}")
    return {"model": mkey, "settings": skey, "computed": done, "reused": skipped}
