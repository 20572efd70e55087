"""The build-pipeline stages as subcommands: db build, db ls, profile, plan, stitch."""

from __future__ import annotations

import json
import pathlib
import time

from .. import families
from . import show
from .commands import check_report_path, one_budget, options_of


def db_build(args) -> int:
    from ..db.build import build, for_levels
    from ..db.levels import check_storable, level_set, parse_all
    from ..db.store import Database
    from ..prepare import prepare
    from ..progress import ProgressPrinter

    opt = options_of(args)
    opt.check(planned=True)
    levels = parse_all(args.levels) or level_set(args.cost, opt.runtime)
    check_storable(levels)
    progress = ProgressPrinter()
    prep = for_levels(prepare(args.model, args.calib, opt, progress, activation_ranges=families.needs_ranges(levels)),
                      opt, levels, progress)
    with Database(args.db) as db:
        r = build(prep, db, args.model, levels, opt, progress)
    print(f"{args.db}: {r['computed']} (layer, level) results computed, {r['reused']} already there; "
          f"model {r['model']}, settings {r['settings']}")
    fast = r.get("time_budget", {}).get("fast_method_layers")
    if fast:
        print(f"the time budget (--max-time) gave {len(fast)} layers GPTQ/SparseGPT instead of exact: "
              f"{', '.join(fast[:5])}{', …' if len(fast) > 5 else ''}; a build with more time solves them exactly")
    return 0


def db_ls(args) -> int:
    from ..db.store import Database

    if not (pathlib.Path(args.db) / "index.sqlite").is_file():
        raise ValueError(f"{args.db}: no database there")
    with Database(args.db) as db:
        rows = db.entries()
    show.table(("model", "settings", "layer", "level", "layer loss", "calib loss", "bytes", "FLOPs/sample"),
               [(e["model"], e["settings"], e["layer"], e["level"], f"{e['layer_loss']:.4g}", f"{e['calib_loss']:.4g}",
                 f"{e['bytes']:.0f}", "?" if e["flops"] is None else f"{e['flops']:.4g}") for e in rows])
    print(f"{len(rows)} entries")
    return 0


def _stage(args, opt, levels):
    """The prepared model (no Hessians) for a stage that reads the database built for `levels`
    (smoothed as db build smoothed it for them)."""
    from ..db.build import for_levels
    from ..prepare import prepare
    from ..progress import ProgressPrinter

    if not (pathlib.Path(args.db) / "index.sqlite").is_file():
        raise ValueError(f"{args.db}: no database there (make it with onnxobc db build)")
    opt.check(planned=True)
    progress = ProgressPrinter()
    return for_levels(prepare(args.model, args.calib, opt, progress, hessians=False,
                              activation_ranges=families.needs_ranges(levels)), opt, levels, progress)


def profile(args) -> int:
    from ..costs import check_runtime, cost_table, model_seconds
    from ..timing import timing_batch
    from ..db.build import model_key, settings_key
    from ..db.levels import level_set, parse_all
    from ..db.store import Database
    from ..progress import ProgressPrinter

    opt = options_of(args)
    check_runtime(opt)
    levels = parse_all(args.levels) or level_set("latency", opt.runtime)
    prep = _stage(args, opt, levels)
    with Database(args.db) as db:
        costs = cost_table(prep, db, model_key(args.model), settings_key(prep, opt), levels, "latency", opt,
                           timing_batch(prep, opt), ProgressPrinter())
        whole = model_seconds(prep, db, args.model, opt)
    names = [lv.name for lv in levels]
    show.table(("layer (ms per batch)",) + tuple(names),
               [(l.weight,) + tuple(f"{c[lvs.index(lv)] * 1e3:.4f}" if lv in lvs else "-" for lv in levels)
                for l, lvs, c in zip(costs.layers, costs.levels, costs.costs)])
    dense = sum(c[lvs.index(levels[0])] for lvs, c in zip(costs.levels, costs.costs) if levels[0] in lvs)
    model = whole.get("folded", whole["source"])
    print(f"{args.db}: timed on {opt.runtime} at batch size {opt.batch_size}; the whole model takes "
          f"{model * 1e3:.3f} ms per batch" + (f", its layers at {names[0]} sum to {dense / model:.2f}x that"
                                              if levels[0].dense else ""))
    return 0


def plan(args) -> int:
    from ..budget import COSTS, budget_factor, make_plan
    from ..db.levels import level_set, parse_all
    from ..db.store import Database
    from ..progress import ProgressPrinter

    kind = one_budget(args, required=True)
    budget_factor(kind, getattr(args, kind))
    opt = options_of(args)
    levels = parse_all(args.levels) or level_set(COSTS[kind], opt.runtime)
    prep = _stage(args, opt, levels)
    with Database(args.db) as db:
        planned = make_plan(prep, db, args.model, opt, kind, getattr(args, kind), levels, args.best_effort,
                            ProgressPrinter(), measure=False)
    show.table(("weight", "level"), list(planned["plan"].items()))
    b = planned["budget"]
    if b["cost"] == "latency":
        print(f"predicted speedup on {b['runtime']}: {b['predicted_speedup']:.2f}x")
    elif "predicted_reduction" in b:
        print(f"the chosen levels reduce the layers' {b['cost']} {b['predicted_reduction']:.2f}x")
    else:
        print(f"the layers' bytes: {b['predicted_layer_cost']:.0f} of {b['layer_budget']:.0f} allowed")
    show.write_json(args.out, planned)
    print(f"wrote {args.out}")
    return 0


def stitch(args) -> int:
    from ..budget import stitch as stitch_plan
    from ..costs import check_runtime
    from ..db.levels import parse
    from ..db.store import Database
    from ..verify import check_paths

    try:
        with open(args.plan) as f:
            planned = json.load(f)
        names = set(planned["plan"].values()) | set(planned.get("levels", []))
        cost = planned["budget"]["cost"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"--plan {args.plan}: not a plan written by onnxobc plan ({type(e).__name__}: {e})") from None
    t0 = time.perf_counter()
    check_paths(args.model, args.out)
    check_report_path(args)
    opt = options_of(args)
    if cost == "latency":
        check_runtime(opt)
    prep = _stage(args, opt, levels=[parse(n) for n in names])
    with Database(args.db) as db:
        rep = stitch_plan(prep, db, args.model, args.out, opt, planned, t0)
    show.report(rep, args.out, args.report)
    return 0
