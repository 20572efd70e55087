"""What a speedup budget can reach, known before anything is solved: a level's time on the
runtime depends on its format and shapes (int8 kernels, MatMulNBits, the factors' rank), not on
the values its weights take. So each (layer, level) is written with stand-in weights rounded to
nearest (or factored in closed form) on an identity Hessian, timed as the budget will time it,
and the timings are stored in the database's latency cache, where the budget's cost table finds
them again. The whole model is timed too, dense and with every layer at each level: how much a
level saves inside the model, against what its layers save alone, scales each layer's saving
(costs.in_model_factors), and a uniform plan is a candidate of its own (whole_plans.py). From
these: the fastest plan's speedup, so that a target out of reach is refused in seconds rather than
after the database is built, and the (layer, level) pairs worth solving at all."""

from __future__ import annotations

import dataclasses

import numpy as np

from .channel_levels import ChannelLevels, narrowed, uniform_name, with_share
from .channel_units import offered, units
from .channels import apply_cuts, stand_in_cut
from .costs import (
    frame,
    in_model,
    in_model_factors,
    SOURCE,
    uniform_key,
)
from .db.build import level_options, model_key
from .db.levels import Level, parse
from .db.profile import layer_latencies, signature
from .db.store import Database
from .export import write
from .graph.activation_qdq import quantized_tensors
from .graph.layers import weight_array
from .memory import memory_budget
from .timing import COST_SECONDS, activation_shapes, timing_batch, timing_feed
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
                seconds = layer_latencies(prep, layer, solved, options, shape)
                for name, sec in seconds.items():
                    db.put_latency(runtime.cache_key(), sig, name, sec)
            made[sig] = {lv: s for lv, s in solved.items() if lv.dense or s.row["applied"]}
            timed[sig] = {lv: seconds[lv.name] for lv in made[sig]}
        seconds_out.append({lv: sec * len(layer.nodes) for lv, sec in timed[sig].items()})
        standins.append(made[sig])
        progress("reach", i + 1, len(prep.layers), f"{layer.weight}: {len(timed[sig])} levels timed")
    return seconds_out, standins


UNIFORM_ROUNDS, UNIFORM_REPEATS = 5, 2  # whole models: fewer runs than a layer alone gets
SESSION_COPIES = 3  # a model timed takes about this many times its file in memory (the proto, the session's weights)


def models_at_once(model_bytes: int, options) -> int:
    """How many whole models beside the dense one may be held and timed together: half the memory
    budget (--max-memory, else what is available) over what each takes; at least one."""
    budget = memory_budget(options.max_memory)
    if budget is None:
        return 1_000_000
    return max(1, int(budget / 2 / (SESSION_COPIES * model_bytes)) - 1)
WHOLE_MARGIN = 0.98  # a uniform plan extends the reach when it is faster than this share of the DP's fastest:
# the DP predicts the uniform plans it can make exactly, up to rounding


ALONE = "groups alone: "  # the names of the whole models with the groups inside chains cut (not a plan's)


def uniform_seconds(prep, db: Database, src, levels: list, standins: list, options, progress=None,
                    cuts: dict | None = None, inner_cuts: dict | None = None) -> dict:
    """Level name → seconds per batch of the model (as planned: folded) with every layer the
    level fits at it (each level of `levels` fits one at least), "dense" with none, SOURCE the
    user's model `src` (its time frames the speedup; the dense one's where no node was folded
    or fused, the only ways they differ in their work); and for each channel share of `cuts` (share
    → (the model cut at it as a Prepared, its layers' stand-ins)), the cut model alone (c0.250)
    and with every layer at each level (c0.250+w8a8dyn); the same for `inner_cuts` (the groups
    inside chains cut alone), named with ALONE before. Those the database holds are read from it;
    the others are timed side by side with the dense model, as many at a time as memory holds
    (models_at_once), each group's times scaled to the first dense time (stand-in weights; int8
    activation ranges stand in too, as their values do not change the time), and stored."""
    progress = progress or (lambda *a: None)
    variants = [("", None, prep, standins)] + [("", share, p, st) for share, (p, st) in (cuts or {}).items()] + \
        [(ALONE, share, p, st) for share, (p, st) in (inner_cuts or {}).items()]
    names = {(tag, share, lv): tag + n for tag, share, _, _ in variants for lv in [Level()] + levels
             if (n := uniform_name(share, lv)) is not None}
    runtime, key = options.target.cache_key(), uniform_key(model_key(src), timing_batch(prep, options))
    seconds = {n: db.latency(runtime, key, n) for n in [SOURCE] * bool(prep.folded) + list(names.values())}
    missing = [n for n, v in seconds.items() if v is None and n != "dense"]
    if not missing and seconds["dense"] is not None:
        return {SOURCE: seconds["dense"], **seconds}
    specs = {}  # name → how to write that model
    for tag, share, p, st in variants:
        wanted = [lv for lv in [Level()] + levels if names.get((tag, share, lv)) in missing + ["dense"]]
        if not wanted:
            continue
        observe = [t for part in quantized_tensors(p.model, p.layers, options.target.int8) for t in part]
        alike = dataclasses.replace(p, ranges={n: (-1.0, 1.0) for n in observe})
        for lv in wanted:
            specs[names[tag, share, lv]] = (alike, {layer.weight: s[lv].with_own_row()
                                                    for layer, s in zip(p.layers, st) if lv in s and not lv.dense}, lv)

    def written(name):
        if name == SOURCE:
            return src
        alike, chosen, lv = specs[name]
        return write(alike, chosen, {w: level_options(options, lv) for w in chosen})

    dense_model = written("dense")
    group = models_at_once(dense_model.ByteSize(), options)
    steps = len(missing) * (1 + UNIFORM_ROUNDS)  # progress: each model written, then each round of its timing
    progress("reach", 0, steps, f"{len(missing)} whole models to write and time, side by side with dense ({group} "
             "at a time)")
    feed = timing_feed(prep, options)
    for i in range(0, max(len(missing), 1), group):  # each group timed in turns with the dense model, on its clock
        models, done = {"dense": dense_model}, i * (1 + UNIFORM_ROUNDS)
        for n in missing[i:i + group]:
            models[n] = written(n)
            done += 1
            progress("reach", done, steps, f"whole model {n} written, to be timed beside dense")
        k = len(models) - 1
        timed = options.target.latencies(
            models, feed, custom_ops=options.custom_ops, rounds=UNIFORM_ROUNDS, repeats=UNIFORM_REPEATS,
            seconds=COST_SECONDS, progress=lambda r, rounds: progress(
                "reach", done + r * k, steps, f"{k} whole models timed beside dense: round {r} of {rounds}"))
        if seconds["dense"] is None:
            seconds["dense"] = timed["dense"]
        seconds.update({n: v * seconds["dense"] / timed["dense"] for n, v in timed.items() if n != "dense"})
        del models
    progress("reach", steps, steps, "whole models timed")
    for name, sec in seconds.items():
        db.put_latency(runtime, key, name, sec)
    return {SOURCE: seconds["dense"], **seconds}


def cut_seconds(prep, db: Database, found: list, levels: list, standins: list, options, progress=None) -> tuple:
    """(share → (the model with every unit of `found` (channel_levels.units) the DP offers cut by
    stand-ins at the share, each chain whole, as a Prepared; its layers' stand-ins: the units'
    layers narrowed, the others' `standins`); the same with the groups inside chains cut alone;
    unit index → share → weight → {Level: seconds alone} of its layers narrowed, at the levels
    that combine with a cut, in the model it is cut in)."""
    whole = offered(found)
    inner = [i for i in range(len(found)) if i not in whole]
    cuts, inner_cuts, seconds = {}, {}, {i: {} for i in range(len(found))}
    for share in sorted({s for u in found for s in u.counts}):
        combined = [lv for lv in levels if lv.dense or with_share(lv, share) is not None]
        for timed_whole, part in ((True, whole), (False, inner)):
            part = [i for i in part if share in found[i].counts]
            if not part:
                continue
            stand = [stand_in_cut(prep, g, k) for i in part for g, k in zip(found[i].groups, found[i].counts[share])
                     if k]
            narrow = narrowed(prep, apply_cuts(prep.model, prep.layers, stand, bias_correction=False)[0])
            members = {w for i in part for w in found[i].members}
            sub = dataclasses.replace(narrow, layers=[l for l in narrow.layers if l.weight in members])
            alone, made = layer_seconds(sub, db, combined, options, progress)
            timed = {l.weight: a for l, a in zip(sub.layers, alone)}
            for i in part:
                seconds[i][share] = {w: timed[w] for w in found[i].members}
            mine = {l.weight: m for l, m in zip(sub.layers, made)}
            (cuts if timed_whole else inner_cuts)[share] = (narrow, [mine.get(l.weight, st)
                                                                     for l, st in zip(narrow.layers, standins)])
    return cuts, inner_cuts, seconds


def cut_costs(full: dict, narrow: dict, uniform: dict, scale: float, whole: list) -> tuple:
    """(unit index → share → weight → {Level: seconds in the model} of its layers narrowed, share
    → {"whole" and, with groups inside chains, "alone": {"dense" or level name: in-model
    factor}}). A cut's saving on a dense layer is scaled by what the whole model cut at the share
    saves against its layers' summed savings; a level's saving on a narrowed layer by what the
    cut model saves at that level against its layers' savings (the cut layers narrowed, the
    others at full width): the whole models timed at each share and level are then predicted
    exactly. The units of `whole` are scaled by the model with them cut (the chains whole), the
    others by the model with those cut (ALONE). `full`: weight → {Level: seconds alone} at full
    width; `narrow`: unit index → share → weight → {Level: seconds alone}; `uniform`: the
    whole-model times."""
    dense = Level()

    def ratio(whole_saved, saved):
        return max(0.0, whole_saved / (scale * saved)) if saved > 0 else 1.0

    def factors_of(layers, share, tag):
        cut = tag + uniform_name(share, dense)
        saved = sum(max(0.0, full[w][dense] - t[dense]) for w, t in layers.items())
        f = {"dense": ratio(uniform["dense"] - uniform[cut], saved) if cut in uniform else 1.0}
        at = {w: layers.get(w, s) for w, s in full.items()}  # every layer, narrowed where the share cuts it
        for lv in {lv for t in layers.values() for lv in t if not lv.dense}:
            name = uniform_name(share, lv)
            if name is None or tag + name not in uniform:
                continue
            saved = sum(max(0.0, t[dense] - t[lv]) for t in at.values() if lv in t)
            f[lv.name] = ratio(uniform[cut] - uniform[tag + name], saved)
        return f

    factors = {}
    for share in sorted({s for t in narrow.values() for s in t}):
        for key, tag, part in (("whole", "", whole), ("alone", ALONE, [i for i in narrow if i not in whole])):
            layers = {w: t for i in part for w, t in narrow[i].get(share, {}).items()}
            if layers:
                factors.setdefault(share, {})[key] = factors_of(layers, share, tag)
    out = {}
    for i, by_share in narrow.items():
        out[i] = {}
        for share, layers in by_share.items():
            f = factors[share]["whole" if i in whole else "alone"]
            out[i][share] = {}
            # a cost below 0: the cut saves more outside the layer (attention, activations) than the layer takes
            for w, t in layers.items():
                base = full[w][dense] - f["dense"] * (full[w][dense] - t[dense])
                out[i][share][w] = {lv: base if lv.dense else base - f.get(lv.name, 1.0) * (t[dense] - v)
                                    for lv, v in t.items()}
    return out, factors


EARLY = 1.10  # a target this far beyond the reach of each unit's largest cut alone is refused before the
# other shares are timed: a smaller cut does more work, so they add plans in between, not faster ones


def reachable(prep, db: Database, src, levels: list, options, progress=None, shares=(),
              refuse_above: float | None = None) -> dict:
    """The fastest plan's predicted speedup over the user's model ("speedup"), with the dense
    model's and the fastest plan's predicted seconds per batch, from timings alone; per layer
    the levels worth solving ("useful": weight → levels, dense and those that fit and save time
    inside the model), and how many that fit do not ("slower"). With channel `shares`, the units
    that can be cut at them, timed ("channels": a ChannelLevels, None without shares); the whole
    model's seconds per batch with every layer at each level ("uniform", "dense" with none), and
    the names of those faster than any plan the layers' times add up to ("whole"). With
    `refuse_above`, each unit's largest cut is timed first, and when the speedup asked is beyond
    EARLY times that reach, the figures are those ("shares_timed" names the shares timed)."""
    timed = levels if Level() in levels else [Level()] + levels  # the dense times frame the rest
    alone, standins = layer_seconds(prep, db, timed, options, progress)
    fitting = [lv for lv in timed if any(lv in s for s in standins)]
    found = units(prep, shares) if shares else []
    largest = sorted({max(u.counts) for u in found})
    rest = sorted(set(shares) - set(largest))
    steps = [largest, rest] if refuse_above is not None and found and rest else [list(shares)]
    cuts, inner_cuts, narrow, done = {}, {}, {i: {} for i in range(len(found))}, []
    for step in steps:
        done += step
        more = cut_seconds(prep, db, _at(found, step), timed, standins, options, progress)
        cuts.update(more[0])
        inner_cuts.update(more[1])
        for i, by_share in more[2].items():
            narrow[i].update(by_share)
        timed_models = uniform_seconds(prep, db, src, fitting, standins, options, progress, cuts, inner_cuts)
        out = _fastest(prep, levels, alone, _at(found, done) if shares else None, narrow, timed_models)
        out["shares_timed"] = sorted(done)
        if refuse_above is not None and refuse_above > EARLY * out["speedup"]:
            break
    return out


def _at(found: list, shares) -> list:
    """The units of `found` with only the counts of `shares`."""
    return [dataclasses.replace(u, counts={s: k for s, k in u.counts.items() if s in shares}) for u in found]


def _fastest(prep, levels: list, alone: list, found: list, narrow: dict, timed_models: dict) -> dict:
    """reachable's figures from the timings: `alone`, each layer's seconds at each level;
    `found`, the channel units with the shares timed (None: no shares asked); `narrow`, their
    layers' seconds (cut_seconds); `timed_models`, uniform_seconds'."""
    uniform = {k: v for k, v in timed_models.items() if not k.startswith(ALONE) and k != SOURCE}
    source_s, model_s = timed_models[SOURCE], uniform["dense"]
    dense_layers = sum(s[lv] for s in alone for lv in s if lv.dense)
    fixed, scale = frame(model_s, dense_layers)
    factors = in_model_factors(alone, {k: v for k, v in uniform.items() if not parse(k).channels}, scale)
    per_layer = in_model(alone, factors)
    allowed = [{lv: v for lv, v in s.items() if lv in levels} or {Level(): s[Level()]} for s in per_layer]
    channels = None
    if found is not None:
        full = {layer.weight: s for layer, s in zip(prep.layers, alone)}
        seconds, cut_factors = cut_costs(full, narrow, timed_models, scale, offered(found))
        channels = ChannelLevels(found, seconds, cut_factors)
    found = found or []
    members = {w for u in found for w in u.members}
    fastest = sum(min(s.values()) for layer, s in zip(prep.layers, allowed) if layer.weight not in members)
    if channels is not None:
        fastest += sum(channels.fastest({l.weight: s for l, s in zip(prep.layers, allowed)}).values())
    # a uniform plan is timed whole (whole_plans.py): those faster than any plan the layers' times add up to
    # extend the reach, and need their level solved for every layer it fits, faster alone or not
    best_s = fixed + scale * fastest
    whole = {name: v for name, v in uniform.items() if name != "dense" and v < WHOLE_MARGIN * best_s}
    best_s = min([best_s] + list(whole.values()))
    extra = {parse(name).per_layer() for name in whole}
    # otherwise a level that saves nothing never enters a plan (dense costs no more and loses nothing)
    useful = {layer.weight: [lv for lv, v in s.items()
                             if lv.dense or (lv in levels and (v < s[Level()] or lv in extra))]
              for layer, s in zip(prep.layers, per_layer)}
    slower = sum(lv in levels and not lv.dense and lv not in useful[layer.weight]
                 for layer, s in zip(prep.layers, per_layer) for lv in s)
    return {"speedup": source_s / best_s, "source_seconds": source_s, "fastest_seconds": best_s, "useful": useful,
            "slower": slower, "in_model_factors": factors, "channels": channels, "uniform": uniform,
            "whole": set(whole)}
