"""The `onnxobc` command: thin argument parsing around the library."""

from __future__ import annotations

import argparse
import json
import sys


def _inspect(args) -> int:
    from .graph.flops import macs_per_sample, output_shapes, parse_input_shapes
    from .graph.layers import discover
    from .graph.model import load_model

    fixed = parse_input_shapes(args.input_shape)
    model = load_model(args.model)
    layers, skipped = discover(model)
    shapes = output_shapes(model, fixed)
    outputs = {n.name or n.output[0]: n.output[0] for n in model.graph.node}
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
    widths = [max(len(x) for x in col) for col in zip(header, *table)]
    for line in [header] + table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    known = [r["flops_per_sample"] for r in rows if r["flops_per_sample"] is not None]
    print(f"total: {sum(r['params'] for r in rows)} params, {sum(known) / 1e6:.3f} MFLOPs/sample"
          + (" (layers with dynamic shapes not counted)" if len(known) < len(rows) else ""))
    for s in skipped:
        print(f"skipped {s.op} {s.name}: {s.reason}")
    return 0


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
    args = ap.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as e:
        print(f"onnxobc: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
