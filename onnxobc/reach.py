"""What a speedup budget can reach, known before anything is solved: a level's time on the
runtime depends on its format and shapes (int8 kernels, MatMulNBits, the factors' rank), not on
the values its weights take. So each (layer, level) is written with stand-in weights rounded to
nearest (or factored in closed form) on an identity Hessian, timed as the budget will time it,
and the timings are stored in the database's latency cache, where the budget's cost table finds
them again. The whole model is timed too, dense and with every layer at each level: how much a
level saves inside the model, against what its layers save alone, scales each layer's saving
(costs.in_model_factors). From these: the fastest plan's speedup, so that a target out of reach
is refused in seconds rather than after the database is built, and the (layer, level) pairs
worth solving at all."""

from __future__ import annotations

import dataclasses

import numpy as np

from .costs import (
    frame,
    in_model,
    in_model_factors,
    model_seconds,
    stored_uniform_seconds,
    timing_batch,
    timing_feed,
    uniform_key,
)
from .db.build import level_options, model_key
from .db.levels import Level
from .db.profile import activation_shapes, layer_latencies, signature
from .db.store import Database
from .export import write
from .graph.activation_qdq import quantized_tensors
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


def layer_seconds(prep, db: Database, levels: list, options, progress=None) -> tuple:
    """(per layer {level: seconds per batch} of the levels that fit it, every node that uses the
    weight counted; per layer {level: stand-in Solved}): the times from the database's latency
    cache or timed now and stored there. Layers alike (one signature) share their stand-ins."""
    progress = progress or (lambda *a: None)
    runtime, batch = options.target, timing_batch(prep, options)
    shapes = activation_shapes(prep, options)
    timed, made = {}, {}  # signature → {level: seconds}, {level: Solved} of the levels that fit such a layer
    seconds_out, standins = [], []
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
            made[sig] = {lv: s for lv, s in solved.items() if lv.dense or s.row["applied"]}
            timed[sig] = {lv: seconds[lv.name] for lv in made[sig]}
        seconds_out.append({lv: sec * len(layer.nodes) for lv, sec in timed[sig].items()})
        standins.append(made[sig])
        progress("reach", i + 1, len(prep.layers), f"{layer.weight}: {len(timed[sig])} levels timed")
    return seconds_out, standins


UNIFORM_ROUNDS, UNIFORM_REPEATS = 5, 2  # whole models: fewer runs than a layer alone gets


def uniform_seconds(prep, db: Database, src, levels: list, standins: list, options, progress=None) -> dict:
    """Level name → seconds per batch of the model (as planned: folded) with every layer the
    level fits at it (each level of `levels` fits one at least), "dense" with none, timed side by side (stand-in weights; int8 activation
    ranges stand in too, as their values do not change the time); cached in the database."""
    progress = progress or (lambda *a: None)
    runtime, key = options.target.cache_key(), uniform_key(model_key(src), timing_batch(prep, options))
    cached = stored_uniform_seconds(db, model_key(src), timing_batch(prep, options), levels, options)
    if cached is not None:
        return cached
    observe = [t for part in quantized_tensors(prep.model, prep.layers, options.target.int8) for t in part]
    alike = dataclasses.replace(prep, ranges={n: (-1.0, 1.0) for n in observe})
    models = {"dense": prep.model}
    for lv in levels:
        if not lv.dense:
            chosen = {layer.weight: dataclasses.replace(s[lv], row=dict(s[lv].row))
                      for layer, s in zip(prep.layers, standins) if lv in s}
            models[lv.name] = write(alike, chosen, {w: level_options(options, lv) for w in chosen})
    progress("reach", 0, 1, f"the whole model at each of {len(models) - 1} levels, side by side")
    seconds = options.target.latencies(models, timing_feed(prep, options), custom_ops=options.custom_ops,
                                       rounds=UNIFORM_ROUNDS, repeats=UNIFORM_REPEATS)
    for name, sec in seconds.items():
        db.put_latency(runtime, key, name, sec)
    progress("reach", 1, 1, "the whole model timed at each level")
    return seconds


def reachable(prep, db: Database, src, levels: list, options, progress=None) -> dict:
    """The fastest plan's predicted speedup over the user's model ("speedup"), with the dense
    model's and the fastest plan's predicted seconds per batch, from timings alone; per layer
    the levels worth solving ("useful": weight → levels, dense and those that fit and save time
    inside the model), and how many that fit do not ("slower")."""
    timed = levels if Level() in levels else [Level()] + levels  # the dense times frame the rest
    alone, standins = layer_seconds(prep, db, timed, options, progress)
    t = model_seconds(prep, db, src, options)
    source_s, model_s = t["source"], t.get("folded", t["source"])
    dense_layers = sum(s[lv] for s in alone for lv in s if lv.dense)
    fixed, scale = frame(model_s, dense_layers)
    fitting = [lv for lv in timed if any(lv in s for s in standins)]
    uniform = uniform_seconds(prep, db, src, fitting, standins, options, progress)
    factors = in_model_factors(alone, uniform, scale)
    per_layer = in_model(alone, factors)
    fastest = sum(min((v for lv, v in s.items() if lv in levels), default=s[Level()]) for s in per_layer)
    best_s = fixed + scale * fastest
    # a level that saves nothing never enters a plan (dense costs no more and loses nothing)
    useful = {layer.weight: [lv for lv, v in s.items() if lv.dense or (lv in levels and v < s[Level()])]
              for layer, s in zip(prep.layers, per_layer)}
    slower = sum(lv in levels and not lv.dense and lv not in useful[layer.weight]
                 for layer, s in zip(prep.layers, per_layer) for lv in s)
    return {"speedup": source_s / best_s, "source_seconds": source_s, "fastest_seconds": best_s, "useful": useful,
            "slower": slower, "in_model_factors": factors}
