"""The subcommands: each reads its parsed arguments, calls the library and prints (show.py)."""

from __future__ import annotations

import json
import pathlib
import sys

from .. import families
from ..options import BUDGET_FIELDS, Options, parse_duration
from . import show

DEFAULT_MAX_TIME = 600.0  # seconds of exact solving compress predicts it may spend, unless told


def inspect(args) -> int:
    import dataclasses

    from ..graph.coupling import layer_groups
    from ..graph.flops import macs_per_sample, output_shapes, parse_input_shapes
    from ..graph.layers import discover
    from ..graph.model import load_model
    from ..graph.nodes import node_name
    from ..prepare import rewrite

    fixed = parse_input_shapes(args.input_shape)
    model = load_model(args.model)
    folded, notes = rewrite(model)  # the model as compress sees it: its channel groups are those compress cuts
    layers, skipped = discover(model)
    shapes = output_shapes(model, fixed)
    outputs = {node_name(n): n.output[0] for n in model.graph.node}
    rows = []
    for l in layers:
        macs = macs_per_sample(l, [outputs[n] for n in l.nodes], shapes)
        rows.append({"weight": l.weight, "op": l.op, "nodes": l.nodes, "groups": l.groups, "rows": l.rows,
                     "cols": l.cols, "params": l.groups * l.rows * l.cols,
                     "flops_per_sample": None if macs is None else 2 * macs})
    groups = layer_groups(model, layers)
    if args.json:
        json.dump({"folded_nodes": folded, "notes": notes, "layers": rows, "skipped": [vars(s) for s in skipped],
                   "channel_groups": [{k: v for k, v in dataclasses.asdict(g).items() if k != "aligned"}
                                      for g in groups]}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.model}: {len(layers)} compressible layer(s), {len(skipped)} skipped")
    if folded:
        print(f"as compress sees it: {folded} nodes folded into the layers next to them, computed once or fused, "
              "the same values")
    for note in notes:
        print(f"note: {note}")
    header = ("weight", "op", "nodes", "matrix (groups × rows × cols)", "params", "MFLOPs/sample")
    show.table(header, [(r["weight"], r["op"], str(len(r["nodes"])), f"{r['groups']} × {r['rows']} × {r['cols']}",
                         str(r["params"]),
                         "dynamic" if r["flops_per_sample"] is None else f"{r['flops_per_sample'] / 1e6:.3f}")
                        for r in rows])
    known = [r["flops_per_sample"] for r in rows if r["flops_per_sample"] is not None]
    print(f"total: {sum(r['params'] for r in rows)} params, {sum(known) / 1e6:.3f} MFLOPs/sample"
          + (" (layers with dynamic shapes not counted)" if len(known) < len(rows) else ""))
    for s in skipped:
        print(f"skipped {s.op} {s.name}: {s.reason}")
    free = [g for g in groups if not g.blocked]
    print(f"channel groups: {len(free)} of {len(groups)} layers' output channels can be removed with what reads them")
    for g in groups:
        if g.blocked:
            print(f"  {g.producer} ({g.channels}): blocked, {g.blocked}")
        else:
            via = g.through + [f"depthwise {w}" for w in g.depthwise] + [f"the gate made by {w}" for w in g.gates]
            print(f"  {g.producer} ({g.channels}): read by {', '.join(c.weight for c in g.consumers)}"
                  + (f" through {', '.join(via)}" if via else ""))
    return 0


def options_of(args) -> Options:
    """The library's Options from the arguments; a missing Ray, cluster or GPU is an error now,
    before any work."""
    if not args.calib:
        raise ValueError("--calib is required (on the command line or in --config)")
    if getattr(args, "ray", None):
        from ..cluster import connect

        connect(args.ray)
    else:
        from ..solver.backend import array_module

        array_module(args.device)
    if args.max_time is not None:
        max_time = parse_duration(args.max_time)
    else:  # interactive use gets a time budget; a method named (exact included) is kept whatever the time
        max_time = DEFAULT_MAX_TIME if args.method is None else None
    return Options(**{f: getattr(args, f) for f in families.FIELDS}, symmetric=not args.asym,
                   method=args.method or "exact", max_time=max_time,
                   damp=args.damp, act_ranges=args.act_ranges, smooth=args.smooth, slow_int8=args.slow_int8,
                   skip=tuple(args.skip or ()), batch_size=args.batch_size,
                   bias_correction=not args.no_bias_correction, variance_correction=not args.no_variance_correction,
                   runtime=args.runtime, matmulnbits=args.matmulnbits, custom_ops=tuple(args.custom_ops or ()),
                   max_memory=args.max_memory, ray=getattr(args, "ray", None), device=args.device,
                   sequential=getattr(args, "sequential", "auto"), workers=args.workers)


def check_report_path(args) -> None:
    if args.report and pathlib.Path(args.report).resolve() in (pathlib.Path(args.model).resolve(),
                                                               pathlib.Path(args.out).resolve()):
        raise ValueError("--report must be a file of its own, not the input model or the output")


def one_budget(args, required: bool = False):
    budgets = [b for b in BUDGET_FIELDS if getattr(args, b, None) is not None]
    if len(budgets) > 1:
        raise ValueError(f"give one budget, not {' and '.join('--' + b for b in budgets)}")
    if required and not budgets:
        raise ValueError("give a budget: --speedup, --size, --flops or --bops")
    return budgets[0] if budgets else None


def compress(args) -> int:
    from ..pipeline import compress as compress_all
    from ..progress import ProgressPrinter

    check_report_path(args)
    kind = one_budget(args)
    opt = options_of(args)
    if kind:
        from ..budget import compress_to_budget
        from ..db.levels import parse_all

        rep = compress_to_budget(args.model, args.out, args.calib, opt, kind, getattr(args, kind), args.db,
                                 args.best_effort, parse_all(args.levels), ProgressPrinter())
    else:
        rep = compress_all(args.model, args.out, args.calib, opt, progress=ProgressPrinter())
    show.report(rep, args.out, args.report)
    return 0


def tradeoff(args) -> int:
    from ..progress import ProgressPrinter
    from ..tradeoff import tradeoff as curves

    opt = options_of(args)
    rep = curves(args.model, args.calib, args.out, opt, args.levels, not args.no_plot, ProgressPrinter())
    timed = rep["dense_seconds"] is not None
    header = ("family", "level", "bytes", "compression", "rel. output error") + (("ms/batch", "speedup") if timed
                                                                              else ())
    show.table(header, [(p["family"], p["level"], str(p["bytes"]), f"{p['compression_ratio']:.2f}x",
                         f"{p['error']:.4g}")
                        + ((f"{p['seconds'] * 1e3:.3f}", f"{p['speedup']:.2f}x") if timed else ())
                        for p in rep["points"]])
    if timed:
        print(f"dense: {rep['bytes']} bytes, {rep['dense_seconds'] * 1e3:.3f} ms per batch on {rep['runtime']}")
    else:
        print(f"latency {rep['latency']}")
    print(f"wrote {args.out}/tradeoff.json" + (f" and {rep['plot']}" if "plot" in rep else "")
          + f" in {rep['seconds_total']:.1f} s")
    return 0
