"""The `onnxobc` command: thin argument parsing around the library."""

from __future__ import annotations

import argparse
import json
import sys


def _print_table(header, rows) -> None:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    for line in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


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


def _compress(args) -> int:
    import pathlib

    from .pipeline import Options, compress

    if args.report and pathlib.Path(args.report).resolve() == pathlib.Path(args.model).resolve():
        raise ValueError("--report must not be the input model")
    opt = Options(sparsity=args.sparsity, nm=args.nm, block4=args.block4, wbits=args.wbits, symmetric=not args.asym, method=args.method,
                  damp=args.damp, skip=tuple(args.skip or ()), batch_size=args.batch_size,
                  bias_correction=not args.no_bias_correction,
                  variance_correction=not args.no_variance_correction, abits=args.abits, runtime=args.runtime,
                  matmulnbits=args.matmulnbits, custom_ops=tuple(args.custom_ops or ()))
    from .progress import ProgressPrinter

    report = compress(args.model, args.out, args.calib, opt, progress=ProgressPrinter())
    header = ("weight", "op", "matrix", "sparsity", "stored as", "layer loss", "rel. layer error", "note")
    table = [(r["weight"], r["op"], r["shape"], f"{r['sparsity']:.3f}", r["storage"], f"{r['layer_loss']:.4g}",
              f"{r['relative_layer_error']:.4g}", r["note"]) for r in report["layers"]]
    _print_table(header, table)
    v = report["verification"]
    errs = ", ".join(f"{k}: {e:.4g}" for k, e in v["relative_output_error"].items())
    print(f"verified: onnx.checker passed, onnxruntime ran it; relative output error on {v['samples']} held-out "
          f"samples: {errs}")
    unfused = v.get("unfused_relative_output_error", {})
    if any(k in unfused and e > 2 * unfused[k] and e > 0.01 for k, e in v["relative_output_error"].items()):
        print("warning: onnxruntime's fused int8 kernels give a larger error than the QDQ graph run unfused ("
              + ", ".join(f"{k}: {e:.4g}" for k, e in unfused.items()) + "); on CPUs without VNNI the U8S8 kernels "
              "saturate: try --wbits 7", file=sys.stderr)
    b = report["bytes"]
    print(f"wrote {args.out} in {report['seconds']:.1f} s: {b['output']} bytes, {b['input'] / b['output']:.2f}x "
          f"smaller than the input's {b['input']}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
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
    c = sub.add_parser("compress", help="compress a model layer by layer from calibration data")
    c.add_argument("model", help="the .onnx file to compress (never modified)")
    c.add_argument("out", help="where to write the compressed model")
    c.add_argument("--calib", required=True,
                   help="an .npz file keyed by input name (samples first), a folder of them, or 'random'")
    c.add_argument("--sparsity", type=float, help="unstructured sparsity per layer, e.g. 0.5")
    c.add_argument("--nm", type=_nm, help="N:M sparsity along input channels, e.g. 2:4")
    c.add_argument("--block4", type=float, metavar="SPARSITY",
                   help="sparsity in blocks of 4 consecutive input channels (DeepSparse's pattern), e.g. 0.8")
    c.add_argument("--wbits", type=int, help="weight bits (2-8), per output channel")
    c.add_argument("--asym", action="store_true", help="asymmetric weight grid (default: symmetric, zero point 0)")
    c.add_argument("--abits", type=int, help="8: static int8 activations too (W8A8 QDQ, needs --wbits 8 or 7)")
    c.add_argument("--matmulnbits", action="store_true",
                   help="write quantized MatMul weights as onnxruntime's MatMulNBits (com.microsoft) kernels")
    c.add_argument("--runtime", default="onnxruntime",
                   help="the runtime the QDQ form is for: onnxruntime (default; uint8 activations, fused U8S8 "
                        "kernels) or tensorrt (symmetric int8, zero points 0)")
    c.add_argument("--method", default="exact", help="exact (default), gptq, sparsegpt, magnitude or rtn")
    c.add_argument("--damp", type=float, default=0.01, help="relative Hessian dampening (default 0.01)")
    c.add_argument("--skip", nargs="*", metavar="NAME", help="weights or nodes to leave dense")
    c.add_argument("--batch-size", type=int, default=8, help="calibration samples per onnxruntime run")
    c.add_argument("--no-bias-correction", action="store_true",
                   help="do not fold each compressed layer's output mean shift into its bias")
    c.add_argument("--custom-ops", action="append", metavar="LIB",
                   help="custom-op library the model needs in onnxruntime: 'extensions' (onnxruntime-extensions) "
                        "or a library file; only libraries named here are loaded (repeatable)")
    c.add_argument("--no-variance-correction", action="store_true",
                   help="do not rescale the channels a BatchNormalization reads to the dense output variance")
    c.add_argument("--report", help="also write the summary as JSON here")
    c.set_defaults(run=_compress)
    args = ap.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as e:
        print(f"onnxobc: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
