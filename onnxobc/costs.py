"""What each (layer, level) costs for a budget: its measured latency on the target runtime (each
layer alone at its real input shape, timed when the database has no figure and cached there by
a signature of the layer, the runtime's version and the machine), or its analytic bytes, FLOPs
or BOPs from the database; and the whole model's time, against which a speedup is measured."""

from __future__ import annotations

import dataclasses

from .db.build import from_arrays, model_key, settings_key
from .db.profile import layer_latencies, signature
from .db.store import Database, fingerprint
from .errors import OptionError
from .options import Options
from .timing import activation_shapes, latencies


@dataclasses.dataclass
class Table:
    """Per layer: the levels, their calibration losses and costs."""

    layers: list
    levels: list  # [[Level]] per layer
    losses: list
    costs: list


def cost_table(prep, db: Database, mkey: str, skey: str, levels: list, cost: str, options: Options,
               batch_size: int, progress=None, measure: bool = True, only: dict | None = None) -> Table:
    """Every layer's levels with their calibration losses and costs, read from the database;
    latencies missing there are measured and stored (with `measure`), else an error. `only`:
    weight → the levels that layer may take (of `levels`), where not every one is worth it."""
    progress = progress or (lambda *a: None)
    runtime = options.target
    shapes = activation_shapes(prep, options) if cost == "latency" else {}
    rows_levels, losses, costs = [], [], []
    total, done = len(prep.layers) * len(levels), 0
    for layer in prep.layers:
        levels_here = levels if only is None else [lv for lv in levels if lv in only[layer.weight]]
        missing = [lv.name for lv in levels_here if not db.has(mkey, skey, layer.weight, lv.name)]
        if missing:
            raise ValueError(f"the database has no {', '.join(missing)} for layer {layer.weight!r} of this model with "
                             "these settings: run onnxobc db build with the same options and levels first")
        stored = {lv: db.get(mkey, skey, layer.weight, lv.name) for lv in levels_here}
        if cost == "latency":
            shape = (batch_size,) + tuple(shapes[layer.activations[0]])
            sig = signature(layer, shape)
            seconds = {lv.name: db.latency(runtime.cache_key(), sig, lv.name) for lv in levels_here}
            if any(v is None for v in seconds.values()):  # time every level of the layer together
                if not measure:
                    raise ValueError(f"layer {layer.weight!r} is not timed on {options.runtime} at batch size "
                                     f"{batch_size} for every level: run onnxobc profile first")
                seconds = layer_latencies(prep, layer, {lv: from_arrays(*stored[lv], lv) for lv in levels_here},
                                          options, shape)
                for name, sec in seconds.items():
                    db.put_latency(runtime.cache_key(), sig, name, sec)
        have, ls, cs = [], [], []
        done += len(levels) - len(levels_here)
        for lv in levels_here:
            meta = stored[lv][1]
            if not lv.dense and meta["row"].get("applied") is False:
                continue  # the level does not fit the layer (N:M, 4-blocks, low-rank of a grouped Conv)
            if cost == "latency":
                c = seconds[lv.name] * len(layer.nodes)
            else:
                c = meta[{"size": "bytes", "flops": "flops", "bops": "bops"}[cost]]
            done += 1
            progress("costs", done, total, f"{layer.weight} {lv.name}")
            if c is None:
                continue  # FLOPs unknown (dynamic shapes): only levels with a cost compete
            have.append(lv)
            ls.append(meta["calib_loss"])
            cs.append(c)
        if not have:
            raise OptionError(f"layer {layer.weight!r} has no level that fits it with a known {cost} cost "
                              "(add dense to {levels}, fix symbolic input shapes, or use {speedup} or {size})")
        rows_levels.append(have)
        losses.append(ls)
        costs.append(cs)
    return Table(prep.layers, rows_levels, losses, costs)


def model_seconds(prep, db: Database, src, options: Options, measure: bool = True) -> dict:
    """Seconds per batch of the user's model ("source") and, when nodes were folded or fused
    (prepare.load), of the model the plan starts from ("folded"), on the runtime: measured now
    and stored (with `measure`), else read from the database."""
    runtime = options.target.cache_key()
    sig = fingerprint("whole model", model_key(src), settings_key(prep, options), options.batch_size, runtime)
    names = ["source"] + (["folded"] if prep.folded else [])
    if measure:
        t = latencies(prep, options, source=src, **({"folded": prep.model} if prep.folded else {}))
        for name in names:
            db.put_latency(runtime, sig, name, t[name])
        return t
    t = {name: db.latency(runtime, sig, name) for name in names}
    if any(v is None for v in t.values()):
        raise ValueError(f"the whole model is not timed on {options.runtime} at batch size {options.batch_size}: "
                         "run onnxobc profile first")
    return t


def frame(model_s: float, dense_layers: float) -> tuple:
    """(fixed, scale): the time no level changes (the model's less its layers' summed times,
    when positive), and the factor that scales the layers' summed times down where they add up
    to more than the whole model (they overlap, or fuse with their neighbours there)."""
    if not dense_layers > 0:
        return model_s, 1.0
    return max(0.0, model_s - dense_layers), min(1.0, model_s / dense_layers)


SOURCE = "the user's model"  # among the whole-model times: the model as given, timed beside the others


def uniform_key(mkey: str, batch_size: int) -> str:
    """Where the database keeps the whole model's times with every layer at one level (and SOURCE's)."""
    return fingerprint("uniform levels, chains cut whole, the user's model beside", mkey, batch_size)


def stored_uniform_seconds(db: Database, mkey: str, batch_size: int, names: list, options: Options) -> dict:
    """The whole-model times (reach.uniform_seconds) of those of `names` the database holds."""
    seconds = {n: db.latency(options.target.cache_key(), uniform_key(mkey, batch_size), n) for n in names}
    return {n: v for n, v in seconds.items() if v is not None}


def in_model_factors(per_layer: list, uniform: dict, scale: float) -> dict:
    """Level → the share of its summed savings (dense less the level's time, each layer alone,
    where the level is the faster) that the level saves inside the model, measured with every layer it fits at it (`uniform`:
    level name → whole-model seconds, "dense" the model as planned). Inside a model a level
    saves more or less than alone: dynamic int8 quantizes an input once for every MatMul that
    reads it and fuses the bias, a static int8 chain keeps its data in uint8. Levels that save
    nothing alone keep their times (factor 1). `per_layer`: {Level: seconds} per layer."""
    out = {}
    for name, seconds in uniform.items():
        if name == "dense":
            continue
        saved = sum(max(0.0, s[d] - s[lv]) for s in per_layer for d in s if d.dense for lv in s if lv.name == name)
        out[name] = max(0.0, (uniform["dense"] - seconds) / (scale * saved)) if saved > 0 else 1.0
    return out


def in_model(per_layer: list, factors: dict) -> list:
    """`per_layer` ({Level: seconds} per layer) with each level's saving over dense scaled by its
    factor (in_model_factors): the times the plan adds up."""
    out = []
    for s in per_layer:
        dense = next((v for lv, v in s.items() if lv.dense), None)
        out.append({lv: v if dense is None or lv.dense else max(0.0, dense - factors.get(lv.name, 1.0) * (dense - v))
                    for lv, v in s.items()})
    return out


def check_runtime(options: Options) -> None:
    """An OptionError when the target runtime does not run here (a latency budget needs it)."""
    reason = options.target.available()
    if reason:
        raise OptionError(f"{{runtime}} {options.runtime}: {reason.replace('{', '(').replace('}', ')')}")
