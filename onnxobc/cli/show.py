"""What the command prints: tables, the compression report, the budget's figures; JSON files."""

from __future__ import annotations

import json
import sys

from ..atomic import atomic_path
from ..channel_levels import DEFAULT_SHARES
from ..progress import duration


def table(header, rows) -> None:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    for line in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


def write_json(path, data) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)


def report(rep: dict, out, report_path=None) -> None:
    """The final table, the verification, the budget's figures; the JSON report when asked."""
    header = ("weight", "op", "matrix", "level", "sparsity", "stored as", "layer loss", "rel. layer error",
              "output error alone", "note")
    table(header, [(r["weight"], r["op"], r["shape"], r.get("level", ""), f"{r['sparsity']:.3f}", r["storage"],
                    f"{r['layer_loss']:.4g}", f"{r['relative_layer_error']:.4g}",
                    f"{r['output_error']:.4g}" if "output_error" in r else "", r["note"]) for r in rep["layers"]])
    for s in rep["skipped"]:
        print(f"left as is: {s['name']} ({s['op']}): {s['reason']}")
    for note in rep["notes"]:
        print(f"note: {note}")
    v = rep["verification"]
    errs = ", ".join(f"{k}: {e:.4g}" for k, e in v["relative_output_error"].items())
    plural = "s" if v["samples"] != 1 else ""
    samples = f"held-out sample{plural}" if v["held_out"] else f"calibration sample{plural} (too few to hold any out)"
    print(f"verified: onnx.checker passed, onnxruntime ran it; relative output error on {v['samples']} {samples}: "
          f"{errs}")
    unfused = v.get("unfused_relative_output_error", {})
    if any(k in unfused and e > 2 * unfused[k] and e > 0.01 for k, e in v["relative_output_error"].items()):
        print("warning: onnxruntime's fused int8 kernels give a larger error than the QDQ graph run unfused ("
              + ", ".join(f"{k}: {e:.4g}" for k, e in unfused.items()) + "); on CPUs without VNNI the U8S8 kernels "
              "saturate: try --wbits 7", file=sys.stderr)
    t = rep.get("time_budget")
    if t and t["fast_method_layers"]:
        print(f"time budget {duration(t['max_time'])} (--max-time): the exact solvers were predicted to take "
              f"{duration(t['predicted_exact_seconds'])}; {len(t['fast_method_layers'])} "
              f"layer{'s' if len(t['fast_method_layers']) > 1 else ''}, the longest, got "
              f"{t['fast_method']} (SparseGPT for pruning) instead: {', '.join(t['fast_method_layers'][:5])}"
              + (", …" if len(t["fast_method_layers"]) > 5 else "") + " (--method exact solves all exactly)")
    if "budget" in rep:
        budget(rep["budget"])
    b = rep["bytes"]
    print(f"wrote {out} in {rep['seconds']:.1f} s: {b['output']} bytes, {b['input'] / b['output']:.2f}x "
          f"smaller than the input's {b['input']}")
    if report_path:
        write_json(report_path, rep)


def budget(b: dict) -> None:
    if b["cost"] == "latency":
        print(f"speedup on {b.get('runtime', 'onnxruntime')}: predicted {b['predicted_speedup']:.2f}x, measured "
              f"{b['measured_speedup']:.2f}x (dense {b['dense_model_seconds'] * 1e3:.3f} ms, output "
              f"{b['output_model_seconds'] * 1e3:.3f} ms per batch; the layers alone sum to "
              f"{b['layer_sum_over_model']:.2f}x the dense model's time"
              + (f"; the fastest plan: {b['reachable_speedup']:.2f}x)" if "reachable_speedup" in b else ")"))
        if b.get("met") is False:
            print(f"NOT MET: the output measures {b['measured_speedup']:.2f}x, short of the {b['target']} asked: the "
                  "fastest plan tried is written (this runtime delivers less here than the layers' timings "
                  "predicted; the attempts below)", file=sys.stderr)
        if len(b.get("measurements", [])) > 1:
            print(f"timed {len(b['measurements'])} times, the first being far below the prediction (the median "
                  "counts): " + ", ".join(f"{m:.2f}x" for m in b["measurements"]))
        if b.get("uniform_plan"):
            print(f"plan: every layer at {b['uniform_plan']} where it fits, a uniform plan timed whole: no plan the "
                  "layers' summed times allowed met the target (or, best effort, came as close with less loss)")
        if b.get("channel_units"):
            deep = [s for s in b.get("channel_shares", []) if s > max(DEFAULT_SHARES)]
            print(f"channel removal: {b['channel_units_cut']} of {b['channel_units']} channel groups and attention "
                  f"blocks cut (each layer's note says by how much)"
                  + (f"; cuts beyond half ({', '.join(map(str, deep))}) were offered, as cuts of up to half did not "
                     "reach the target: expect a larger loss" if deep else ""))
        if len(b.get("attempts", [])) > 1:
            print("re-planned from the measurements: " + "; ".join(
                f"aimed {a['aimed_speedup']:.2f}x, predicted {a['predicted_speedup']:.2f}x (corrected by the "
                f"measurements before: {a['corrected_speedup']:.2f}x), measured {a['measured_speedup']:.2f}x"
                + (" (written)" if a.get("written") else "") for a in b["attempts"]))
    elif b["cost"] == "size":
        print(f"size: target {b['target']} of the input, predicted {b['predicted_share']:.3f}, reached "
              f"{b['measured_share']:.3f}")
    else:
        print(f"{b['cost']}: target {b['target']}, the chosen levels reduce the layers' {b['cost']} "
              f"{b['predicted_reduction']:.2f}x")
