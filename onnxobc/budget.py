"""Compression under a budget (the OBC paper's workflow): for a speedup, first refuse a target
out of reach from the levels' timings alone (reach.py); then build the database of every layer at
every level, cost each (layer, level) — measured latency on the target runtime, or analytic
bytes, FLOPs, BOPs — let the DP pick one level per layer with the least summed calibration
loss within the budget (for a speedup it cannot meet, a uniform plan timed whole may:
whole_plans.py), stitch the choice into one model, correct, verify, and measure the
real end-to-end speedup against the dense model.

Budgets: `speedup` and `flops`/`bops` are reduction factors ("2x"); `size` is the output's
share of the input file's bytes ("0.25"). Latency budgets cover the whole model: the time of
what no level changes (the dense model's measured time minus its layers' summed times, when
positive) stays, and the layers share the rest of the target time.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import time

from . import dp, families
from .channel_levels import DEEP_SHARES, DEFAULT_SHARES, member_row, uniform_name
from .costs import (
    SOURCE,
    check_runtime,
    cost_table,
    frame,
    in_model,
    in_model_factors,
    model_seconds,
    stored_uniform_seconds,
)
from .db.build import build, fast_entry, for_levels, from_arrays, level_options, model_key, settings_key
from .db.levels import Level, check_storable, level_set, parse, split_channels
from .db.store import Database
from .deadline import fast_options
from .errors import OptionError
from .export import write
from .graph.layers import weight_array
from .options import Options
from .prepare import capture, load
from .reach import reachable
from .schedule import solve_all
from .solve import summary_row
from .timing import latencies, timing_batch
from .verify import check_paths, finish
from .whole_plans import uniform_plans

COSTS = {"speedup": "latency", "size": "size", "flops": "flops", "bops": "bops"}
BEST_EFFORT = 0.95  # a best effort takes the plan of least loss whose whole model is within this share of the
#                     best reachable (speed, or the inverse of bytes, FLOPs, BOPs): near the fastest, the last
#                     few per cent cost the most loss (the fastest level of every layer) and are within the
#                     timing's noise


def parse_factor(text: str, what: str) -> float:
    """'2x', '2', '2.5X' → 2.0 (> 1)."""
    try:
        v = float(str(text).lower().removesuffix("x"))
    except ValueError:
        raise OptionError(f"{{{what}}} takes a factor such as 2x, got {text!r}") from None
    if not v > 1:
        raise OptionError(f"{{{what}}} must be more than 1x, got {text!r}")
    return v


def parse_share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise OptionError(f"{{size}} takes the output's share of the input's bytes, e.g. 0.25, got {text!r}") from None
    if not 0 < v < 1:
        raise OptionError(f"{{size}} must be in (0, 1), got {text!r}")
    return v


def budget_factor(kind: str, target: str) -> float:
    """The budget's number: a share for size, a reduction factor for the others."""
    if kind not in COSTS:
        raise OptionError(f"unknown budget {kind!r}: {', '.join(COSTS)}")
    return parse_share(target) if kind == "size" else parse_factor(target, kind)


def make_plan(prep, db: Database, src, options: Options, kind: str, target: str, levels: list,
              best_effort: bool = False, progress=None, measure: bool = True, aim: float | None = None,
              only: dict | None = None, channels=None, whole=None) -> dict:
    """One level per layer with the least summed calibration loss within the budget, from the
    database (every (layer, level) built; latencies measured now or, without `measure`, profiled
    before). `aim`, for a speedup, is the factor asked of the prediction instead of the target's
    (a correction from measurements). `only`: weight → the levels that layer may take, where not
    all are worth it. Where no plan of the DP's meets the target, a uniform plan timed whole
    may (whole_plans.py): `whole`, the names of those whose level was solved for every layer it
    fits (reach's "whole"; None: every one, the database holding every level). Returns the plan
    as JSON-ready data: keys, the chosen level names, the budget figures."""
    factor = budget_factor(kind, target)
    cost = COSTS[kind]
    if aim is not None and cost == "latency":
        factor = aim
    src = pathlib.Path(src)
    mkey, skey = model_key(src), settings_key(prep, options)
    table = cost_table(prep, db, mkey, skey, levels, cost, options, timing_batch(prep, options), progress, measure,
                       only)
    dense = [lvs.index(Level()) if Level() in lvs else None for lvs in table.levels]
    dense_layers = sum(c[i] for c, i in zip(table.costs, dense) if i is not None)
    fixed, scale, source_s, dense_model_s, factors, wholes = 0.0, 1.0, None, None, None, []
    if cost == "latency":  # the speedup is against the user's model; the plan starts from the folded one
        named = list(dict.fromkeys(lv.name for lvs in table.levels for lv in lvs if not lv.dense))
        stored = stored_uniform_seconds(db, mkey, timing_batch(prep, options), ["dense"] + named + _cut_names(
            table, channels), options)
        uniform = {n: stored[n] for n in ["dense"] + named} if {"dense", *named} <= set(stored) else None
        source = stored_uniform_seconds(db, mkey, timing_batch(prep, options), [SOURCE], options)
        if uniform is not None and (source or not prep.folded):  # the user's model timed beside the levels
            source_s, dense_model_s = source.get(SOURCE, uniform["dense"]), uniform["dense"]  # (reach.py)
        else:
            t = model_seconds(prep, db, src, options, measure)
            source_s, dense_model_s = t["source"], t.get("folded", t["source"])
        fixed, scale = frame(dense_model_s, dense_layers)
        if uniform is not None:  # each level's saving as measured inside the model (reach.py timed it)
            alone = [dict(zip(lvs, c)) for lvs, c in zip(table.levels, table.costs)]
            factors = in_model_factors(alone, uniform, scale)
            per_layer = in_model(alone, factors)
            table.costs = [[s[lv] for lv in lvs] for s, lvs in zip(per_layer, table.levels)]
            wholes = [(w, (w.seconds - fixed) / scale) for w in uniform_plans(table, stored, channels)
                      if whole is None or w.name in whole]  # (plan, its time as the layers' summed cost)
        budget = (source_s / factor - fixed) / scale
    elif cost == "size":
        budget = factor * src.stat().st_size - (src.stat().st_size - dense_layers)
    else:
        budget = dense_layers / factor
    units = _units(table, channels) if cost == "latency" and channels is not None else []
    members = {w for opts in units for w in opts[0][2]}
    singles = [i for i, l in enumerate(table.layers) if l.weight not in members]
    losses = [table.losses[i] for i in singles] + [[o[1] for o in opts] for opts in units]
    costs = [table.costs[i] for i in singles] + [[o[0] for o in opts] for opts in units]
    taken = None  # a uniform plan taken instead of the DP's (whole_plans.py)
    # the budget may be negative: what no level changes takes the whole target, and only cuts that save work
    # outside their layers (negative costs) can meet it
    try:
        choice = dp.solve(losses, costs, budget)
    except dp.InfeasibleBudget as e:
        taken = min((w for w in wholes if w[1] <= budget), key=lambda w: w[0].loss, default=None)
        if taken is None:
            best = min([e.best] + [w[1] for w in wholes])
            if not best_effort:
                reach = _reachable(kind, best * scale, fixed, source_s, dense_layers, src)
                raise OptionError(f"the {kind} budget {target} cannot be met: the best reachable is {reach} "
                                  "({best_effort} writes the plan of least loss close to it)") from None
            base, unit = (fixed, scale) if cost == "latency" else (
                (src.stat().st_size - dense_layers, 1.0) if cost == "size" else (0.0, 1.0))
            near = ((base + unit * best) / BEST_EFFORT - base) / unit
            choice, least = None, math.inf  # unless a plan of the DP's comes that close, a uniform one does
            try:
                choice = dp.solve(losses, costs, near)
                least = sum(l[k] for l, k in zip(losses, choice))
            except dp.InfeasibleBudget:
                pass
            taken = min((w for w in wholes if w[1] <= near and w[0].loss < least), key=lambda w: w[0].loss,
                        default=None)
    if taken is not None:
        predicted, chosen = taken[1], dict(taken[0].levels)
    else:
        predicted = sum(c[k] for c, k in zip(costs, choice))
        chosen = {table.layers[i].weight: table.levels[i][k] for i, k in zip(singles, choice)}
        for opts, k in zip(units, choice[len(singles):]):
            chosen.update(opts[k][2])
    figures = {"kind": kind, "target": target, "cost": cost, "layer_budget": budget,
               "predicted_layer_cost": predicted, "dense_layer_cost": dense_layers, "layer_scale": scale,
               "uniform_plan": taken[0].name if taken is not None else None}
    if cost == "latency":
        raw = source_s / (fixed + scale * predicted)
        # a re-plan aims higher by what the last measurement missed: the same ratio corrects its prediction
        figures.update(runtime=options.runtime, batch_size=options.batch_size, aimed_speedup=factor,
                       predicted_speedup=raw, corrected_speedup=raw * budget_factor(kind, target) / factor,
                       layer_sum_over_model=dense_layers / dense_model_s, in_model_factors=factors)
    elif cost == "size":
        figures["predicted_share"] = (src.stat().st_size - dense_layers + predicted) / src.stat().st_size
    else:
        figures["predicted_reduction"] = dense_layers / predicted if predicted else float("inf")
    return {"model": mkey, "settings": skey, "input": str(src), "levels": [lv.name for lv in levels], "budget": figures,
            "plan": {l.weight: chosen[l.weight].name for l in table.layers}}


def _cut_names(table, channels) -> list:
    """The uniform models with every unit cut at a share that reach.py timed (channel_levels.uniform_name)."""
    if channels is None:
        return []
    shares = sorted({s for u in channels.units for s in u.counts})
    levels = [Level()] + list(dict.fromkeys(lv for lvs in table.levels for lv in lvs if not lv.dense))
    return [n for s in shares for lv in levels if (n := uniform_name(s, lv)) is not None]


def _units(table, channels) -> list:
    """The options of each channel unit the DP is offered (channel_levels.ChannelLevels.options)
    from the cost table."""
    by = {name: {l.weight: v for l, v in zip(table.layers, values)}
          for name, values in (("levels", table.levels), ("losses", table.losses), ("costs", table.costs))}
    return [channels.options(i, by["levels"], by["losses"], by["costs"]) for i in channels.offered()]


def stitch(prep, db: Database, src, dst, options: Options, planned: dict, t0: float, extra: dict | None = None,
           channels=None, progress=None) -> dict:
    """Write the model `planned` (make_plan's result) chooses from the database, correct, verify,
    save; for a latency budget also time it against the dense model. Layers of channel units the
    plan cuts (`channels`: the ChannelLevels it was made with) are cut by structured ExactOBS and
    then solved at their levels on the smaller shapes. Returns the report."""
    src = pathlib.Path(src)
    if planned.get("model") != model_key(src):
        raise ValueError(f"the plan was made for another model than {src} (its bytes differ)")
    if planned.get("settings") != settings_key(prep, options):
        raise ValueError("the plan was made with other solver settings or calibration data than these: "
                         "give the options the plan was made with")
    plan = {w: parse(name) for w, name in planned["plan"].items()}
    lacking = [l.weight for l in prep.layers if l.weight not in plan]
    if lacking:
        raise ValueError(f"the plan has no level for the layers {lacking}")
    if channels is None and any(lv.channels for lv in plan.values()):
        raise OptionError("the plan removes channels: such a plan is made and written in one run of compress "
                          "with {speedup}")
    work, members = channels.cut(prep, plan, options, progress) if channels is not None else (prep, {})
    chosen, errors = {}, {}
    for l in prep.layers:
        level = plan[l.weight].per_layer()
        if not db.has(planned["model"], planned["settings"], l.weight, level.name):
            raise OptionError(f"the database has no {level.name} for layer {l.weight!r}: is {{db}} the "
                              "database the plan was made from?")
        arrays, meta = db.get(planned["model"], planned["settings"], l.weight, level.name)
        loss = meta["calib_loss"] if not level.dense else 0.0
        if l.weight in members:
            loss += members[l.weight][3]  # the cut's loss, and the level's at full width
        elif not level.dense:
            chosen[l.weight] = from_arrays(arrays, meta, level)
        if not plan[l.weight].dense:  # fidelity.output_errors' figure, from the loss the plan weighed
            errors[l.weight] = {"output_error": math.sqrt(loss)}
    narrowed = _solve_narrowed(work, db, planned, plan, members, options, progress or (lambda *a: None))
    written = {**chosen, **narrowed}
    out_model = write(work, written, {w: level_options(options, plan[w].per_layer())
                                      for w in written})
    rows = []
    for l in prep.layers:
        w = l.weight
        if w in members:
            row = member_row(work, w, narrowed.get(w), members[w])
        else:
            row = dict(chosen[w].row) if w in chosen else summary_row(l, weight_array(prep.model, w), note="dense")
        rows.append(dict(row, level=plan[w].name, storage=row.get("storage", "float32"), **errors.get(w, {})))
    budget = dict(planned["budget"])
    report = finish(work, out_model, dst, rows, options, t0,
                    {"budget": budget, "plan": planned["plan"], **(extra or {})})
    if budget["cost"] == "latency":
        budget.update(measure(prep, options, src, dst, budget["predicted_speedup"]))
    elif budget["cost"] == "size":
        budget["measured_share"] = report["bytes"]["output"] / report["bytes"]["input"]
    return report


RETIME = 0.8  # of the predicted speedup: a measurement below it is taken again before it decides anything
TIMINGS = 3  # measurements at most, of which the median speedup counts


def measure(prep, options, src, dst, predicted: float) -> dict:
    """The dense model and the output timed side by side: their seconds per batch and the
    speedup. A measurement far below the prediction (a burst of load on a shared machine can
    halve one) is taken again, and the median of TIMINGS counts; every speedup measured is
    listed."""
    runs = []
    while True:
        t = latencies(prep, options, dense=src, out=dst)
        runs.append((t["dense"] / t["out"], t))
        if len(runs) == TIMINGS or runs[0][0] >= RETIME * predicted:
            break
    speedup, t = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]
    return {"dense_model_seconds": t["dense"], "output_model_seconds": t["out"], "measured_speedup": speedup,
            "measurements": [r[0] for r in runs]}


def _solve_narrowed(work, db: Database, planned: dict, plan: dict, members: dict, options: Options,
                    progress) -> dict:
    """Weight → Solved of each layer of a cut unit at its own level (not dense) on its smaller
    shape (`work`: the cut model), by the method its full-width entry in the database was solved
    with (the fast one where the time budget gave it that)."""
    jobs = []
    for layer in work.layers:
        level = plan[layer.weight].per_layer()
        if layer.weight not in members or level.dense:
            continue
        setting = level_options(options, level)
        if fast_entry(db, planned["model"], planned["settings"], layer.weight, level):
            setting = fast_options(setting)
        jobs.append((layer, [setting]))
    out = {}
    for layer, (s,), status in solve_all(work, jobs, options):
        out[layer.weight] = s
        progress("cut", len(out), len(jobs), f"{layer.weight} narrowed, at its level{status}")
    return out


def compress_to_budget(model_path, out_path, calib, options: Options, kind: str, target: str, db_dir=None,
                       best_effort: bool = False, levels: list | None = None, progress=None) -> dict:
    """The whole workflow for one budget (db build, profile, plan, stitch); returns the report
    (the plan, predicted and measured figures, verification)."""
    progress = progress or (lambda *a: None)
    budget_factor(kind, target)
    options.check(planned=True)
    src, dst = check_paths(model_path, out_path)
    t0 = time.perf_counter()
    if COSTS[kind] == "latency":
        check_runtime(options)
    deeper = [] if levels or COSTS[kind] != "latency" else list(DEEP_SHARES)
    levels, shares = _split(levels or level_set(COSTS[kind], options.runtime) + (
        [Level(channels=s) for s in DEFAULT_SHARES] if COSTS[kind] == "latency" else []), kind)
    check_storable(levels)
    prep = for_levels(load(src, calib, options), options, levels, progress)
    db_dir = pathlib.Path(db_dir) if db_dir else dst.parent / f"{dst.name}.db"
    with Database(db_dir) as db:
        reach = None
        if COSTS[kind] == "latency":  # refused in seconds, before anything is solved, when out of reach
            refuse_above = None if best_effort else budget_factor(kind, target)
            reach = reachable(prep, db, src, levels, options, progress, shares, refuse_above=refuse_above)
            if reach["speedup"] < budget_factor(kind, target) and deeper:
                progress("reach", 0, 1, f"{reach['speedup']:.2f}x with cuts of up to half: deeper cuts "
                         f"({', '.join(map(str, deeper))}) timed too")
                shares = shares + deeper
                reach = reachable(prep, db, src, levels, options, progress, shares, refuse_above=refuse_above)
            if reach["speedup"] < budget_factor(kind, target) and not best_effort:
                early = ", each channel unit at its largest cut" if reach["shares_timed"] != shares else ""
                raise OptionError(f"the speedup budget {target} cannot be met: the best reachable is "
                                  f"{reach['speedup']:.2f}x on {options.runtime} at batch size "
                                  f"{timing_batch(prep, options)} (timed before solving{early}; the timings are "
                                  f"kept in {db_dir}; {{best_effort}} writes the plan of least loss close to it)")
        only = reach and reach["useful"]
        channels = reach and reach["channels"]
        prep = capture(prep, options, progress, activation_ranges=families.needs_ranges(levels))
        built = build(prep, db, src, levels, options, progress, only)
        if only:
            built["slower_than_dense"] = reach["slower"]  # (layer, level) pairs not solved: no plan takes them
        if channels:
            channels.measure_losses(prep, options, progress)
        extra = {"database": {"path": str(db_dir), **built}}
        if prep.smoothing:
            extra["smoothing"] = prep.smoothing
        if "time_budget" in built:
            extra["time_budget"] = extra["database"].pop("time_budget")
        whole = reach and reach["whole"]
        planned = make_plan(prep, db, src, options, kind, target, levels, best_effort, progress, only=only,
                            channels=channels, whole=whole)
        report = stitch(prep, db, src, dst, options, planned, t0, extra, channels, progress)
        if COSTS[kind] == "latency":
            report = _corrected(prep, db, src, dst, options, kind, target, levels, planned, report, t0, extra,
                                progress, only, channels, whole)
            report["budget"]["reachable_speedup"] = reach["speedup"]
            if channels:
                report["budget"]["channel_units"] = len({g.producer for u in channels.units for g in u.groups})
                report["budget"]["channel_units_cut"] = len(channels.decode({w: parse(n) for w, n in
                                                                             report["plan"].items()}))
                report["budget"]["channel_factors"] = {str(s): f for s, f in channels.factors.items()}
                report["budget"]["channel_shares"] = reach["shares_timed"]
        return report


def _split(levels: list, kind: str) -> tuple:
    """(the levels solved layer by layer, the channel shares a speedup budget may cut units by)."""
    levels, cut = split_channels(levels, "the layers it cuts take the other levels by themselves")
    if cut and COSTS[kind] != "latency":
        raise OptionError(f"levels {[lv.name for lv in cut]}: channel removal is offered to {{speedup}} budgets only")
    return levels, sorted(lv.channels for lv in cut)


CORRECTIONS = 3  # re-plans at most
SHORT = 0.97  # of the requested speedup: a plan measured below it is short
OVER = 1.10  # of the requested speedup: a plan measured above it gives up more than asked; a lower aim is tried


def _corrected(prep, db, src, dst, options, kind, target, levels, planned, report, t0, extra, progress,
               only, channels, whole=None) -> dict:
    """Whole-plan correction: while every plan measures short of the requested speedup, ask the
    DP for more by the ratio the last plan's prediction missed by (the layers' times in the
    database do not add up exactly to the model's; where that aim is out of reach, the plan of
    least loss close to the fastest, as a best effort makes it); where one measures short and another far
    over, aim in between (geometrically); where every plan is far over, aim lower by the ratio
    the least aimed one went over (a plan that gives up less may meet the request too). Each plan
    is stitched and measured; every attempt is in the report's budget["attempts"], and the output
    is the one of least aim that met the request (else the fastest measured; budget["met"] says
    which)."""
    requested = budget_factor(kind, target)
    dst = pathlib.Path(dst)
    tried = []  # (aim, plan, report, the copy of its files)

    def note(r, aim):
        copy = dst.with_name(f".{dst.name}.attempt{len(tried)}")
        for suffix in ("", ".data"):
            if pathlib.Path(f"{dst}{suffix}").exists():
                shutil.copyfile(f"{dst}{suffix}", f"{copy}{suffix}")
        tried.append((aim, r["plan"], r, copy))

    def measured(t):
        return t[2]["budget"]["measured_speedup"]

    note(report, requested)
    aim = requested
    try:
        for _ in range(CORRECTIONS):
            met = [t for t in tried if measured(t) >= SHORT * requested]
            short = [t for t in tried if measured(t) < SHORT * requested]
            if met:
                best = min(met, key=lambda t: t[0])
                if measured(best) <= OVER * requested:
                    break
                # far over: aim between it and a short plan, or, with none, lower by what it went over
                aim = math.sqrt(max(t[0] for t in short) * best[0]) if short else \
                    best[0] * requested / measured(best)
            else:
                b = report["budget"]
                aim *= b["predicted_speedup"] / b["measured_speedup"]
            try:  # every plan short: where the aim is out of reach, the plan of least loss close to the fastest
                again = make_plan(prep, db, src, options, kind, target, levels, not met, progress, measure=False,
                                  aim=aim, only=only, channels=channels, whole=whole)
            except ValueError:
                break  # the corrected aim is out of reach: keep what was measured
            if any(again["plan"] == t[1] for t in tried):
                if met:
                    break  # nothing between the two plans
                continue
            progress("correct", len(tried), CORRECTIONS, f"measured {report['budget']['measured_speedup']:.2f}x: "
                     f"aiming at {aim:.2f}x")
            report = stitch(prep, db, src, dst, options, again, t0, extra, channels, progress)
            note(report, aim)
        met = [t for t in tried if measured(t) >= SHORT * requested]
        chosen = min(met, key=lambda t: t[0]) if met else max(tried, key=measured)
        if chosen is not tried[-1]:
            for suffix in ("", ".data"):
                if pathlib.Path(f"{chosen[3]}{suffix}").exists():
                    os.replace(f"{chosen[3]}{suffix}", f"{dst}{suffix}")
        report = chosen[2]
        report["budget"]["attempts"] = [{**{k: t[2]["budget"][k] for k in ("aimed_speedup", "predicted_speedup",
                                                                            "corrected_speedup", "measured_speedup")},
                                         "written": t is chosen} for t in tried]
        report["budget"]["met"] = measured(chosen) >= SHORT * requested
    finally:
        for t in tried:
            for suffix in ("", ".data"):
                pathlib.Path(f"{t[3]}{suffix}").unlink(missing_ok=True)
    return report


def _reachable(kind, best, fixed, source_s, dense_layers, src) -> str:
    if kind == "speedup":
        return f"{source_s / (fixed + best):.2f}x"
    if kind == "size":
        return f"{(best + src.stat().st_size - dense_layers) / src.stat().st_size:.3f} of the input"
    return f"{dense_layers / best:.2f}x" if best else "unbounded"
