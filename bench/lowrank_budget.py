"""Low-rank levels in the --speedup DP, on onnxruntime (CPU): the same targets planned from the
quantization levels alone (dense, w8a8/w7a8, w4) and from those plus low-rank (lr0.500,
lr0.250, lr0.125), one database per model shared by both. Models: a MatMul-heavy MLP
64 → 1024 → 1024 → 1024 → 10 (MatMul + Add, trained here on the scikit-learn digits, test
accuracy on 360 held-out digits) and PP-OCRv4 rec (rendered text lines, as the tests fetch it).
Prints, per target and level set: the plan, predicted and measured speedup (dense and output
timed in turns), output error on held-out samples, and the digits' test accuracy.

    pip install scikit-learn && python bench/lowrank_budget.py [--models mlp rec] [--speedups 1.5 2 3]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import pathlib
import sys
import tempfile

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import ppocr  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.budget import compress_to_budget  # noqa: E402
from onnxobc.db.levels import level_set, parse_all  # noqa: E402
from onnxobc.pipeline import Options  # noqa: E402
from onnxobc.sessions import session  # noqa: E402

ROOT = pathlib.Path(__file__).parents[1]


def wide_mlp(tmp: pathlib.Path, epochs: int):
    """(model path, calibration npz, (test images, labels)) of the MatMul-heavy digits MLP."""
    spec = importlib.util.spec_from_file_location("make", ROOT / "models" / "digits" / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    x, y, test, trainset = make.digits()
    params = make.train(x[trainset].astype(np.float64), y[trainset], epochs=epochs, lr=3e-3,
                        sizes=[64, 1024, 1024, 1024, 10])
    onnx.save(make.export(params, matmul=True), tmp / "mlp.onnx")
    np.savez(tmp / "mlp.npz", x=x[trainset[:512]])
    return tmp / "mlp.onnx", tmp / "mlp.npz", (x[test], y[test])


def accuracy(path, test) -> float:
    sess = session(path)
    return float(np.mean(sess.run(None, {"x": test[0]})[0].argmax(axis=1) == test[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["mlp", "rec"])
    ap.add_argument("--speedups", nargs="*", type=float, help="default: 1.5 2 3 (mlp), 1.1 1.2 1.3 (rec)")
    ap.add_argument("--epochs", type=int, default=40, help="training epochs of the MLP")
    ap.add_argument("--images", type=int, default=32, help="rec calibration lines (a quarter held out)")
    args = ap.parse_args()
    quant = [lv for lv in level_set("latency") if lv.rank is None]
    sets = {"quantization": quant, "+ low-rank": quant + parse_all(["lr0.500", "lr0.250", "lr0.125"])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            test = None
            if name == "mlp":
                model, calib, test = wide_mlp(tmp, args.epochs)
                batch, targets = 64, args.speedups or [1.5, 2.0, 3.0]
                dense_acc = accuracy(model, test)
            else:
                model = ppocr.fetch()["rec"]
                np.savez(tmp / "rec.npz", x=ppocr.rec_inputs(args.images))
                calib, batch, targets = tmp / "rec.npz", 1, args.speedups or [1.1, 1.2, 1.3]
            for target in targets:
                for set_name, levels in sets.items():
                    out = tmp / "out.onnx"
                    rep = compress_to_budget(model, out, calib, Options(batch_size=batch), "speedup", f"{target}x",
                                             db_dir=tmp / f"{name}.db", best_effort=True, levels=levels)
                    b = rep["budget"]
                    (err,) = rep["verification"]["relative_output_error"].values()
                    plan = collections.Counter(rep["plan"].values())
                    met = b["predicted_layer_cost"] <= b["layer_budget"]
                    rows.append([name, f"{target}x" + ("" if met else " (best effort)"), set_name,
                                 ", ".join(f"{k} {v}" for k, v in sorted(plan.items())),
                                 f"{b['predicted_speedup']:.2f}x", f"{b['measured_speedup']:.2f}x", f"{err:.4f}",
                                 f"{accuracy(out, test):.3f} (dense {dense_acc:.3f})" if test else ""])
                    print_table(["model", "target", "levels", "plan", "predicted", "measured", "output error",
                                 "test accuracy"], rows, "Low-rank levels in the --speedup DP, onnxruntime CPU")


if __name__ == "__main__":
    main()
    record()
