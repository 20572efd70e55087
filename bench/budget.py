"""Budgets end to end on real models: PP-OCRv4 det and rec (fetched like the tests do,
calibrated on rendered text) compressed to several --speedup targets on onnxruntime and --size
targets, sharing one database per model and budget kind. Prints the plan's level counts, the
predicted and measured speedup (dense and output timed in turns in one process), the sum of the
layers' times against the whole model's, the file share and the output error on held-out
images; then the time to build the database and to re-plan from it.

    python bench/budget.py [--models det rec] [--speedups 1.05 1.1 1.2] [--sizes 0.25]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import ppocr  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.budget import compress_to_budget  # noqa: E402
from onnxobc.pipeline import Options  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["det", "rec"])
    ap.add_argument("--speedups", nargs="*", type=float, default=[1.05, 1.1, 1.2])
    ap.add_argument("--sizes", nargs="*", type=float, default=[0.25])
    ap.add_argument("--images", type=int, default=32)
    args = ap.parse_args()
    paths = ppocr.fetch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            x = (ppocr.det_inputs if name == "det" else ppocr.rec_inputs)(args.images)
            np.savez(tmp / f"{name}.npz", x=x)
            runs = [("speedup", f"{s}x") for s in args.speedups] + [("size", str(s)) for s in args.sizes]
            for kind, target in runs:
                t = time.perf_counter()
                rep = compress_to_budget(paths[name], tmp / "out.onnx", tmp / f"{name}.npz", Options(batch_size=1),
                                         kind, target, db_dir=tmp / f"{name}-{kind}.db", best_effort=True)
                b = rep["budget"]
                (err,) = rep["verification"]["relative_output_error"].values()
                plan = collections.Counter(rep["plan"].values())
                met = b["predicted_layer_cost"] <= b["layer_budget"]
                rows.append([f"PP-OCRv4 {name}", f"--{kind} {target}" + ("" if met else " (best effort)"),
                             ", ".join(f"{k} {v}" for k, v in sorted(plan.items())),
                             f"{b['predicted_speedup']:.2f}x" if kind == "speedup" else "",
                             f"{b['measured_speedup']:.2f}x" if kind == "speedup" else "",
                             f"{b['layer_sum_over_model']:.2f}" if kind == "speedup" else "",
                             f"{rep['bytes']['output'] / rep['bytes']['input']:.3f}", f"{err:.4f}",
                             f"{rep['database']['computed']} / {rep['database']['reused']}",
                             f"{time.perf_counter() - t:.0f}"])
                print_table(["model", "budget", "levels chosen", "predicted", "measured", "layer sum / model",
                             "file share", "rel. output error", "db computed / reused", "s"], rows,
                            "budgets on onnxruntime CPU, batch 1 (so far)")


if __name__ == "__main__":
    main()
