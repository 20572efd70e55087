"""What a speedup budget can reach, known before anything is solved: a level's time on the
runtime depends on its format and shapes (int8 kernels, MatMulNBits, the factors' rank), not on
the values its weights take. So each (layer, level) is written with stand-in weights rounded to
nearest (or factored in closed form) on an identity Hessian, timed as the budget will time it,
and the timings are stored in the database's latency cache, where the budget's cost table finds
them again. From them and the whole model's time: the fastest plan's speedup, so that a target
out of reach is refused in seconds rather than after the database is built."""

from __future__ import annotations

import dataclasses

import numpy as np

from .costs import frame, model_seconds, timing_batch
from .db.build import level_options
from .db.levels import Level
from .db.profile import activation_shapes, layer_latencies, signature
from .db.store import Database
from .graph.layers import weight_array
from .solve import Problem, dense, solve_layer
from .solver import HessianAccumulator


def stand_in(prep, layer, level, options):
    """`layer` at `level` with weights in the level's format but not solved (round to nearest,
    magnitude pruning, closed-form factors on an identity Hessian): what its time needs."""
    if level.dense:
        return dense(Problem(layer, weight_array(prep.model, layer.weight), [], False))
    hessians = []
    for _ in range(layer.groups):
        acc = HessianAccumulator(layer.cols)
        acc.add_batch(np.eye(layer.cols))
        hessians.append(acc)
    quick = dataclasses.replace(level_options(options, level), method="rtn", device="cpu")
    return solve_layer(Problem(layer, weight_array(prep.model, layer.weight), hessians, False), quick)


def layer_seconds(prep, db: Database, levels: list, options, progress=None) -> list:
    """Per layer, {level: seconds per batch} of the levels that fit it (every node that uses the
    weight counted), from the database's latency cache or timed now with stand-in weights and
    stored there."""
    progress = progress or (lambda *a: None)
    runtime, batch = options.target, timing_batch(prep, options)
    shapes = activation_shapes(prep, options)
    timed = {}  # signature → {level: seconds} of the levels that fit such a layer
    result = []
    for i, layer in enumerate(prep.layers):
        shape = (batch,) + tuple(shapes[layer.activations[0]])
        sig = signature(layer, shape)
        if sig not in timed:  # every level timed, as the cost table does, so that it finds them all
            solved = {lv: stand_in(prep, layer, lv, options) for lv in levels}
            seconds = {lv.name: db.latency(runtime.cache_key(), sig, lv.name) for lv in levels}
            if any(v is None for v in seconds.values()):
                seconds = layer_latencies(prep, layer, solved, options, shape, runtime)
                for name, sec in seconds.items():
                    db.put_latency(runtime.cache_key(), sig, name, sec)
            timed[sig] = {lv: seconds[lv.name] for lv in levels if lv.dense or solved[lv].row["applied"]}
        result.append({lv: sec * len(layer.nodes) for lv, sec in timed[sig].items()})
        progress("reach", i + 1, len(prep.layers), f"{layer.weight}: {len(result[-1])} levels timed")
    return result


def reachable(prep, db: Database, src, levels: list, options, progress=None) -> dict:
    """The fastest plan's predicted speedup over the user's model ("speedup"), with the dense
    model's and the fastest plan's predicted seconds per batch, from timings alone; and per
    layer the levels worth solving ("useful": weight → levels, dense and those that fit and
    time faster than it), and how many that fit are no faster ("slower")."""
    timed = levels if Level() in levels else [Level()] + levels  # the dense times frame the rest
    per_layer = layer_seconds(prep, db, timed, options, progress)
    t = model_seconds(prep, db, src, options)
    source_s, model_s = t["source"], t.get("folded", t["source"])
    dense_layers = sum(s[lv] for s in per_layer for lv in s if lv.dense)
    fastest = sum(min((v for lv, v in s.items() if lv in levels), default=s[Level()]) for s in per_layer)
    fixed, scale = frame(model_s, dense_layers)
    best_s = fixed + scale * fastest
    # a level no faster than dense never enters a plan (dense costs no more and loses nothing)
    useful = {layer.weight: [lv for lv, v in s.items() if lv.dense or (lv in levels and v < s[Level()])]
              for layer, s in zip(prep.layers, per_layer)}
    slower = sum(lv in levels and not lv.dense and lv not in useful[layer.weight]
                 for layer, s in zip(prep.layers, per_layer) for lv in s)
    return {"speedup": source_s / best_s, "source_seconds": source_s, "fastest_seconds": best_s, "useful": useful,
            "slower": slower}
