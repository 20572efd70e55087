"""The `onnxobc` command: thin argument parsing around the library."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def _print_table(header, rows) -> None:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    for line in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


def _inspect(args) -> int:
    from .graph.flops import macs_per_sample, output_shapes, parse_input_shapes
    from .graph.layers import discover
    from .graph.model import load_model
    from .graph.nodes import node_name

    fixed = parse_input_shapes(args.input_shape)
    model = load_model(args.model)
    layers, skipped = discover(model)
    shapes = output_shapes(model, fixed)
    outputs = {node_name(n): n.output[0] for n in model.graph.node}
    rows = []
    for l in layers:
        macs = macs_per_sample(l, [outputs[n] for n in l.nodes], shapes)
        rows.append({"weight": l.weight, "op": l.op, "nodes": l.nodes, "groups": l.groups, "rows": l.rows,
                     "cols": l.cols, "params": l.groups * l.rows * l.cols,
                     "flops_per_sample": None if macs is None else 2 * macs})
    if args.json:
        json.dump({"layers": rows, "skipped": [vars(s) for s in skipped]}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.model}: {len(layers)} compressible layer(s), {len(skipped)} skipped")
    header = ("weight", "op", "nodes", "matrix (groups × rows × cols)", "params", "MFLOPs/sample")
    table = [(r["weight"], r["op"], str(len(r["nodes"])), f"{r['groups']} × {r['rows']} × {r['cols']}",
              str(r["params"]), "dynamic" if r["flops_per_sample"] is None else f"{r['flops_per_sample'] / 1e6:.3f}")
             for r in rows]
    _print_table(header, table)
    known = [r["flops_per_sample"] for r in rows if r["flops_per_sample"] is not None]
    print(f"total: {sum(r['params'] for r in rows)} params, {sum(known) / 1e6:.3f} MFLOPs/sample"
          + (" (layers with dynamic shapes not counted)" if len(known) < len(rows) else ""))
    for s in skipped:
        print(f"skipped {s.op} {s.name}: {s.reason}")
    return 0


def _nm(text):
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--nm takes N:M such as 2:4, got {text!r}") from None
    return n, m


def _options(args):
    from .pipeline import Options

    if not args.calib:
        raise ValueError("--calib is required (on the command line or in --config)")
    if getattr(args, "ray", None):
        from .cluster import connect

        connect(args.ray)  # a missing Ray or cluster is an error now, not after the capture
    else:
        from .solver.backend import array_module

        array_module(args.device)  # --device cuda without a usable GPU is an error now, too
    return Options(sparsity=args.sparsity, nm=args.nm, block4=args.block4, wbits=args.wbits, rank=args.rank,
                   codebook=None if args.codebook is None else str(args.codebook), outliers=args.outliers,
                   plus_rank=args.plus_rank,
                   symmetric=not args.asym,
                   method=args.method, damp=args.damp, skip=tuple(args.skip or ()), batch_size=args.batch_size,
                   bias_correction=not args.no_bias_correction,
                   variance_correction=not args.no_variance_correction, abits=args.abits, runtime=args.runtime,
                   matmulnbits=args.matmulnbits, custom_ops=tuple(args.custom_ops or ()), max_memory=args.max_memory,
                   ray=getattr(args, "ray", None), device=args.device)


BUDGETS = ("speedup", "size", "flops", "bops")


def _check_report_path(args) -> None:
    if args.report and pathlib.Path(args.report).resolve() in (pathlib.Path(args.model).resolve(),
                                                               pathlib.Path(args.out).resolve()):
        raise ValueError("--report must be a file of its own, not the input model or the output")


def _compress(args) -> int:
    from .pipeline import compress
    from .progress import ProgressPrinter

    _check_report_path(args)
    kind = _one_budget(args)
    opt = _options(args)
    if kind:
        from .budget import compress_to_budget, parse_levels

        report = compress_to_budget(args.model, args.out, args.calib, opt, kind, getattr(args, kind),
                                    args.db, args.best_effort, parse_levels(args.levels), ProgressPrinter())
    else:
        report = compress(args.model, args.out, args.calib, opt, progress=ProgressPrinter())
    _print_report(report, args.out, args.report)
    return 0


def _print_report(report: dict, out, report_path=None) -> None:
    """The final table, the verification, the budget's figures; the JSON report when asked."""
    header = ("weight", "op", "matrix", "level", "sparsity", "stored as", "layer loss", "rel. layer error", "note")
    table = [(r["weight"], r["op"], r["shape"], r.get("level", ""), f"{r['sparsity']:.3f}", r["storage"],
              f"{r['layer_loss']:.4g}", f"{r['relative_layer_error']:.4g}", r["note"]) for r in report["layers"]]
    _print_table(header, table)
    for s in report["skipped"]:
        print(f"left as is: {s['name']} ({s['op']}): {s['reason']}")
    for note in report["notes"]:
        print(f"note: {note}")
    v = report["verification"]
    errs = ", ".join(f"{k}: {e:.4g}" for k, e in v["relative_output_error"].items())
    print(f"verified: onnx.checker passed, onnxruntime ran it; relative output error on {v['samples']} held-out "
          f"samples: {errs}")
    unfused = v.get("unfused_relative_output_error", {})
    if any(k in unfused and e > 2 * unfused[k] and e > 0.01 for k, e in v["relative_output_error"].items()):
        print("warning: onnxruntime's fused int8 kernels give a larger error than the QDQ graph run unfused ("
              + ", ".join(f"{k}: {e:.4g}" for k, e in unfused.items()) + "); on CPUs without VNNI the U8S8 kernels "
              "saturate: try --wbits 7", file=sys.stderr)
    if "budget" in report:
        _print_budget(report["budget"])
    b = report["bytes"]
    print(f"wrote {out} in {report['seconds']:.1f} s: {b['output']} bytes, {b['input'] / b['output']:.2f}x "
          f"smaller than the input's {b['input']}")
    if report_path:
        _write_json(report_path, report)


def _write_json(path, data) -> None:
    from .atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)


def _print_budget(b: dict) -> None:
    if b["cost"] == "latency":
        print(f"speedup on {b.get('runtime', 'onnxruntime')}: predicted {b['predicted_speedup']:.2f}x, measured "
              f"{b['measured_speedup']:.2f}x (dense {b['dense_model_seconds'] * 1e3:.3f} ms, output "
              f"{b['output_model_seconds'] * 1e3:.3f} ms per batch; the layers alone sum to "
              f"{b['layer_sum_over_model']:.2f}x the dense model's time)")
        if len(b.get("attempts", [])) > 1:
            print("measured short of the target, re-planned: " + "; ".join(
                f"aimed {a['aimed_speedup']:.2f}x, predicted {a['predicted_speedup']:.2f}x (corrected by the "
                f"measurements before: {a['corrected_speedup']:.2f}x), measured {a['measured_speedup']:.2f}x"
                for a in b["attempts"]))
    elif b["cost"] == "size":
        print(f"size: target {b['target']} of the input, reached {b['measured_share']:.3f}")
    else:
        print(f"{b['cost']}: target {b['target']}, the chosen levels reduce the layers' {b['cost']} "
              f"{b['predicted_reduction']:.2f}x")


def _db_build(args) -> int:
    from .budget import parse_levels
    from .db.build import build
    from .db.levels import level_set
    from .db.store import Database
    from .pipeline import prepare
    from .progress import ProgressPrinter

    opt = _options(args)
    opt.check(planned=True)
    levels = parse_levels(args.levels) or level_set(args.cost, opt.runtime)
    progress = ProgressPrinter()
    prep = prepare(args.model, args.calib, opt, progress, activation_ranges=any(lv.abits for lv in levels))
    with Database(args.db) as db:
        r = build(prep, db, args.model, levels, opt, progress)
    print(f"{args.db}: {r['computed']} (layer, level) results computed, {r['reused']} already there; "
          f"model {r['model']}, settings {r['settings']}")
    return 0


def _db_ls(args) -> int:
    from .db.store import Database

    if not (pathlib.Path(args.db) / "index.sqlite").is_file():
        raise ValueError(f"{args.db}: no database there")
    with Database(args.db) as db:
        rows = db.entries()
    table = [(e["model"], e["settings"], e["layer"], e["level"], f"{e['layer_loss']:.4g}", f"{e['calib_loss']:.4g}",
              f"{e['bytes']:.0f}", "?" if e["flops"] is None else f"{e['flops']:.4g}") for e in rows]
    _print_table(("model", "settings", "layer", "level", "layer loss", "calib loss", "bytes", "FLOPs/sample"), table)
    print(f"{len(rows)} entries")
    return 0


def _stage(args, opt, levels=None):
    """The prepared model (no Hessians) for a stage that reads the database."""
    from .pipeline import prepare
    from .progress import ProgressPrinter

    if not (pathlib.Path(args.db) / "index.sqlite").is_file():
        raise ValueError(f"{args.db}: no database there (make it with onnxobc db build)")
    opt.check(planned=True)
    return prepare(args.model, args.calib, opt, ProgressPrinter(), hessians=False,
                   activation_ranges=any(lv.abits for lv in levels or ()))


def _profile(args) -> int:
    from .budget import check_runtime, cost_table, model_seconds, parse_levels, timing_batch
    from .db.build import model_key, settings_key
    from .db.levels import level_set
    from .db.store import Database
    from .progress import ProgressPrinter

    opt = _options(args)
    check_runtime(opt)
    levels = parse_levels(args.levels) or level_set("latency", opt.runtime)
    prep = _stage(args, opt)
    with Database(args.db) as db:
        table = cost_table(prep, db, model_key(args.model), settings_key(prep, opt), levels, "latency", opt,
                           timing_batch(prep, opt), ProgressPrinter())
        whole = model_seconds(prep, db, args.model, opt)
    names = [lv.name for lv in levels]
    rows = [(l.weight,) + tuple(f"{c[lvs.index(lv)] * 1e3:.4f}" if lv in lvs else "-" for lv in levels)
            for l, lvs, c in zip(table.layers, table.levels, table.costs)]
    _print_table(("layer (ms per batch)",) + tuple(names), rows)
    dense = sum(c[lvs.index(levels[0])] for lvs, c in zip(table.levels, table.costs) if levels[0] in lvs)
    model = whole.get("folded", whole["source"])
    print(f"{args.db}: timed on {opt.runtime} at batch size {opt.batch_size}; the whole model takes "
          f"{model * 1e3:.3f} ms per batch" + (f", its layers at {names[0]} sum to {dense / model:.2f}x that"
                                              if levels[0].dense else ""))
    return 0


def _plan(args) -> int:
    from .budget import COSTS, budget_factor, make_plan, parse_levels
    from .db.levels import level_set
    from .db.store import Database
    from .progress import ProgressPrinter

    kind = _one_budget(args, required=True)
    budget_factor(kind, getattr(args, kind))
    opt = _options(args)
    levels = parse_levels(args.levels) or level_set(COSTS[kind], opt.runtime)
    prep = _stage(args, opt)
    with Database(args.db) as db:
        planned = make_plan(prep, db, args.model, opt, kind, getattr(args, kind), levels, args.best_effort,
                            ProgressPrinter(), measure=False)
    _print_table(("weight", "level"), list(planned["plan"].items()))
    b = planned["budget"]
    if b["cost"] == "latency":
        print(f"predicted speedup on {b['runtime']}: {b['predicted_speedup']:.2f}x")
    elif "predicted_reduction" in b:
        print(f"the chosen levels reduce the layers' {b['cost']} {b['predicted_reduction']:.2f}x")
    else:
        print(f"the layers' bytes: {b['predicted_layer_cost']:.0f} of {b['layer_budget']:.0f} allowed")
    _write_json(args.out, planned)
    print(f"wrote {args.out}")
    return 0


def _stitch(args) -> int:
    import time

    from .budget import check_runtime, stitch
    from .db.levels import parse
    from .db.store import Database
    from .pipeline import _check_paths

    try:
        with open(args.plan) as f:
            planned = json.load(f)
        names = set(planned["plan"].values())
        cost = planned["budget"]["cost"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"--plan {args.plan}: not a plan written by onnxobc plan ({type(e).__name__}: {e})") from None
    t0 = time.perf_counter()
    _check_paths(args.model, args.out)
    _check_report_path(args)
    opt = _options(args)
    if cost == "latency":
        check_runtime(opt)
    prep = _stage(args, opt, levels=[parse(n) for n in names])
    with Database(args.db) as db:
        report = stitch(prep, db, args.model, args.out, opt, planned, t0)
    _print_report(report, args.out, args.report)
    return 0


def _one_budget(args, required: bool = False):
    budgets = [b for b in BUDGETS if getattr(args, b, None) is not None]
    if len(budgets) > 1:
        raise ValueError(f"give one budget, not {' and '.join('--' + b for b in budgets)}")
    if required and not budgets:
        raise ValueError("give a budget: --speedup, --size, --flops or --bops")
    return budgets[0] if budgets else None


def _tradeoff(args) -> int:
    from .progress import ProgressPrinter
    from .tradeoff import tradeoff

    opt = _options(args)
    report = tradeoff(args.model, args.calib, args.out, opt, args.levels, not args.no_plot, ProgressPrinter())
    timed = report["dense_seconds"] is not None
    header = ("family", "level", "bytes", "compression", "rel. output error") + (("ms/batch", "speedup") if timed
                                                                              else ())
    rows = [(p["family"], p["level"], str(p["bytes"]), f"{p['compression_ratio']:.2f}x", f"{p['error']:.4g}")
            + ((f"{p['seconds'] * 1e3:.3f}", f"{p['speedup']:.2f}x") if timed else ()) for p in report["points"]]
    _print_table(header, rows)
    if timed:
        print(f"dense: {report['bytes']} bytes, {report['dense_seconds'] * 1e3:.3f} ms per batch on {report['runtime']}")
    else:
        print(f"latency {report['latency']}")
    print(f"wrote {args.out}/tradeoff.json" + (f" and {report['plot']}" if "plot" in report else "")
          + f" in {report['seconds_total']:.1f} s")
    return 0


def _add_solver_options(c) -> None:
    c.add_argument("--calib", help="an .npz file keyed by input name (samples first), a folder of them, or "
                                   "'random' (required, here or in --config)")
    c.add_argument("--method", default="exact", help="exact (default), gptq, sparsegpt, magnitude or rtn")
    c.add_argument("--damp", type=float, default=0.01, help="relative Hessian dampening (default 0.01)")
    c.add_argument("--skip", nargs="*", metavar="NAME", help="weights or nodes to leave dense")
    c.add_argument("--batch-size", type=int, default=8,
                   help="calibration samples per onnxruntime run, and the batch latencies are measured at")
    c.add_argument("--asym", action="store_true", help="asymmetric weight grid (default: symmetric, zero point 0)")
    c.add_argument("--runtime", default="onnxruntime",
                   help="the runtime the output is for: onnxruntime (default; uint8 activations, fused U8S8 "
                        "kernels) or tensorrt (symmetric int8, zero points 0)")
    c.add_argument("--no-bias-correction", action="store_true",
                   help="do not fold each compressed layer's output mean shift into its bias")
    c.add_argument("--no-variance-correction", action="store_true",
                   help="do not rescale the channels a BatchNormalization reads to the dense output variance")
    c.add_argument("--custom-ops", action="append", metavar="LIB",
                   help="custom-op library the model needs in onnxruntime: 'extensions' (onnxruntime-extensions) "
                        "or a library file; only libraries named here are loaded (repeatable)")
    c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where Hessians are summed and the exact solvers run: cuda (a GPU through CuPy), cpu, or "
                        "auto (default): the GPU when CuPy has one")
    c.add_argument("--max-memory", type=float, metavar="GIB",
                   help="memory a layer's Hessians and solve may take; larger layers are left dense with the reason "
                        "(default: the memory available)")
    c.add_argument("--levels", nargs="*", metavar="LEVEL",
                   help="the levels a budget chooses from (default: the set for the budget and runtime), "
                        "e.g. dense w8a8 w4 2:4 s0.500 b4-0.800+w8a8")
    # the fixed-level choices, for the subcommands that do not take them (compress overrides them)
    c.set_defaults(sparsity=None, nm=None, block4=None, wbits=None, abits=None, matmulnbits=False, rank=None,
                   codebook=None, outliers=None, plus_rank=None)


def _add_budgets(c) -> None:
    c.add_argument("--speedup", metavar="FACTOR", help="a budget: measured speedup on --runtime, e.g. 2x")
    c.add_argument("--size", metavar="SHARE", help="a budget: output bytes as a share of the input's, e.g. 0.25")
    c.add_argument("--flops", metavar="FACTOR", help="a budget: the layers' FLOPs reduced, e.g. 3x")
    c.add_argument("--bops", metavar="FACTOR", help="a budget: the layers' bit-operations reduced, e.g. 8x")
    c.add_argument("--best-effort", action="store_true",
                   help="when the budget cannot be met, take the closest plan instead of failing")


def _stage_parser(subparsers, name: str, help: str, db_help: str, run, model_help: str = "the .onnx file"):
    """A build-pipeline stage's subcommand: the model, --db, the solver options and --config."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("model", help=model_help)
    p.add_argument("--db", required=True, metavar="DIR", help=db_help)
    _add_solver_options(p)
    _add_config(p)
    p.set_defaults(run=run)
    return p


def _add_ray(c) -> None:
    c.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="solve the layers as tasks on a Ray cluster: auto (the one `ray start` made, or RAY_ADDRESS), "
                        "local (a new Ray instance here) or its address; needs pip install 'onnxobc[distributed]'")


def _add_config(c) -> None:
    c.add_argument("--config", metavar="FILE", help="TOML file of the same options (the command line overrides it)")


def _config_defaults(argv) -> dict:
    """Options from --config FILE (TOML, keys as the long options with _ for -); the command
    line overrides them."""
    import tomllib

    if "--config" not in argv:
        return {}
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise ValueError("--config needs a file")
    try:
        with open(argv[i + 1], "rb") as f:
            return {k.replace("-", "_"): v for k, v in tomllib.load(f).items()}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"--config {argv[i + 1]}: {e}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="onnxobc", description="Post-training compression of ONNX models "
                                                             "with Optimal Brain Compression.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="list the compressible layers of a model, their 2-D shapes and FLOPs")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,…",
                   help="fix a graph input's shape for the FLOPs count (repeatable)")
    p.set_defaults(run=_inspect)
    c = sub.add_parser("compress", help="compress a model layer by layer from calibration data")
    c.add_argument("model", help="the .onnx file to compress (never modified)")
    c.add_argument("out", help="where to write the compressed model")
    _add_solver_options(c)
    c.add_argument("--sparsity", type=float, help="unstructured sparsity per layer, e.g. 0.5")
    c.add_argument("--nm", type=_nm, help="N:M sparsity along input channels, e.g. 2:4")
    c.add_argument("--block4", type=float, metavar="SPARSITY",
                   help="sparsity in blocks of 4 consecutive input channels (DeepSparse's pattern), e.g. 0.8")
    c.add_argument("--wbits", type=int, help="weight bits (2-8), per output channel")
    c.add_argument("--abits", type=int, help="8: static int8 activations too (W8A8 QDQ, needs --wbits 8 or 7)")
    c.add_argument("--outliers", type=float, metavar="SHARE",
                   help="with --wbits: also keep this share of each layer's weights in float, added to the quantized "
                        "ones (fitted by alternating OBQ and ExactOBS), e.g. 0.01")
    c.add_argument("--plus-rank", type=float, metavar="SHARE",
                   help="with --wbits (and --outliers) or --sparsity: also add a low-rank part costing this share of "
                        "each layer's multiply-adds, fitted by alternating minimisation and folded into the weight "
                        "when the model loads (a form for size), e.g. 0.05")
    c.add_argument("--rank", type=float, metavar="SHARE",
                   help="low-rank: each layer becomes two smaller ones keeping this share of its multiply-adds, "
                        "e.g. 0.5 (grouped Convs stay dense); with --wbits both factors are quantized too")
    c.add_argument("--codebook", metavar="K|K-row|binary|ternary",
                   help="fitted grid: a K-value codebook per layer (K-row: per output channel), or binary {-c, c} / "
                        "ternary {-c, 0, c} per output channel; stored as packed indices plus the values")
    c.add_argument("--matmulnbits", action="store_true",
                   help="write quantized MatMul weights as onnxruntime's MatMulNBits (com.microsoft) kernels")
    _add_budgets(c)
    c.add_argument("--db", metavar="DIR", help="the database a budget builds and reuses (default: OUT.db)")
    _add_ray(c)
    c.add_argument("--report", help="also write the summary as JSON here")
    _add_config(c)
    c.set_defaults(run=_compress)
    t = sub.add_parser("tradeoff", help="error against bytes on disk and measured latency, per compression family")
    t.add_argument("model", help="the .onnx file (never modified)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="folder for one model per level, tradeoff.json, tradeoff.png and the database")
    _add_solver_options(t)
    t.add_argument("--no-plot", action="store_true", help="write tradeoff.json only (no matplotlib needed)")
    t.set_defaults(run=_tradeoff)
    d = sub.add_parser("db", help="the database of compressed layers")
    dsub = d.add_subparsers(dest="db_command", required=True)
    b = _stage_parser(dsub, "build", "solve every layer at every level of a budget's set, resuming what is stored",
                      "the database folder (made if missing)", _db_build)
    b.add_argument("--cost", default="latency", choices=["latency", "size", "flops", "bops"],
                   help="the budget whose level set to build (default latency)")
    _add_ray(b)
    pr = _stage_parser(sub, "profile", "time every layer of the database at each level on the runtime, and the "
                                       "whole model (cached in the database)",
                       "a database made by onnxobc db build", _profile)
    pl = _stage_parser(sub, "plan", "choose one level per layer under a budget from the database (no solving, "
                                    "no timing) and write the plan as JSON",
                       "a database made by onnxobc db build (and profile)", _plan)
    pl.add_argument("--out", required=True, metavar="PLAN.json", help="where to write the plan")
    _add_budgets(pl)
    st = _stage_parser(sub, "stitch", "write the model a plan chooses from the database, correct, verify, and "
                                      "time it for a speedup plan",
                       "the database the plan was made from", _stitch,
                       model_help="the .onnx file the plan was made for (never modified)")
    st.add_argument("out", help="where to write the compressed model")
    st.add_argument("--plan", required=True, metavar="PLAN.json", help="a plan written by onnxobc plan")
    st.add_argument("--report", help="also write the summary as JSON here")
    ls = dsub.add_parser("ls", help="list the database's entries")
    ls.add_argument("--db", required=True, metavar="DIR")
    ls.set_defaults(run=_db_ls)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        defaults = _config_defaults(argv)
        if defaults:
            configured = (c, b, pr, pl, st)
            known = {a.dest for sp in configured for a in sp._actions}
            unknown = sorted(set(defaults) - known)
            if unknown:
                raise ValueError(f"--config: unknown options {unknown}")
            for sp in configured:
                sp.set_defaults(**{k: v for k, v in defaults.items() if k in {a.dest for a in sp._actions}})
        args = ap.parse_args(argv)
        if isinstance(getattr(args, "nm", None), str):
            args.nm = _nm(args.nm)
        return args.run(args)
    except (ValueError, argparse.ArgumentTypeError) as e:
        print(f"onnxobc: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a file that cannot be written or read
        where = f": {e.filename}" if e.filename else ""
        print(f"onnxobc: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnxobc: interrupted (finished layers stay in the database; rerun to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line to report, the traceback with ONNXOBC_TRACEBACK=1
        import os
        import traceback

        if os.environ.get("ONNXOBC_TRACEBACK"):
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"onnxobc: internal error, please report it with the input: {type(e).__name__}: {e} "
              f"(at {pathlib.Path(where.filename).name}:{where.lineno}; ONNXOBC_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
