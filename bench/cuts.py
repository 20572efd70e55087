"""Channel cuts on real models, made both ways, and how far their fit reaches beyond the
calibration samples: each model's channels cut uniformly at each share given (channels.plan_cuts
on the dense model's Hessians, as `--channels` plans them), the cut model made as solved
(independently, every group on the dense model's inputs) and made again wave after wave
(recut.cut_sequentially: every layer refitted to the cut model's inputs). Printed per model and
share: the relative output error on the first 16 solve samples (the ones the Hessians came from)
and on held-out inputs (never in the calibration file), the task agreement on the held-out inputs
(rec: decoded text equal; det: text-mask IoU; cls: top-1; minilm: mean embedding cosine) and
the seconds each way took. For comparison, onnxruntime.quantization on the same samples (CNNs:
quantize_static QDQ per channel; minilm: quantize_dynamic per channel), scored alike: a cut that
fits the solve samples far closer than held-out ones overfits them, which the DP's held-out
losses (fidelity.LossProbe) account for.

    python bench/cuts.py [--models rec cls det minilm] [--shares 0.25 0.5] [--images 64] [--held 32]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import minilm  # noqa: E402
import ppocr  # noqa: E402
from evidence import record  # noqa: E402
from pipeline import quantize_static, task_agreement  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc.channels import apply_cuts, plan_cuts  # noqa: E402
from onnxobc.options import Options  # noqa: E402
from onnxobc.pipeline import prepare  # noqa: E402
from onnxobc.recut import cut_sequentially  # noqa: E402
from onnxobc.verify import outputs, relative_errors  # noqa: E402

HEADER = ["model", "share cut", "made", "rel. error, solve samples", "rel. error, held out",
          "task agreement (held out)", "s"]
SOLVE_SCORED = 16  # solve samples scored, as many as the DP's loss probe takes held-out ones
BATCH = {"det": 1, "rec": 6, "cls": 6, "minilm": 32}


def samples(name: str, n: int) -> dict:
    if name == "minilm":
        return minilm.feeds(n)
    return {"x": {"det": ppocr.det_inputs, "rec": ppocr.rec_inputs, "cls": ppocr.cls_inputs}[name](n)}


def agreement(name: str, dense: np.ndarray, got: np.ndarray) -> str:
    if name != "minilm":
        return task_agreement(name, dense, got)
    cos = (dense * got).sum(1) / (np.linalg.norm(dense, axis=1) * np.linalg.norm(got, axis=1))
    return f"{cos.mean():.4f} cosine"


def scored(name, dense, model, solve: dict, held: dict, batch: int) -> tuple:
    """(error on the solve samples, error on the held-out ones, task agreement held out)."""
    errors = []
    for data in (solve, held):
        ref, got = outputs(dense, data, batch), outputs(model, data, batch)
        errors.append(max(relative_errors(ref, got).values()))
    return (*errors, agreement(name, next(iter(ref.values())).astype(np.float64),
                               next(iter(got.values())).astype(np.float64)))


def baseline(name: str, path, calib: dict, tmp: pathlib.Path) -> tuple:
    """(label, path) of onnxruntime.quantization's model on the same samples."""
    out = tmp / f"{name}-ort.onnx"
    if name == "minilm":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=True)
        return "quantize_dynamic per channel", out
    quantize_static(path, out, calib["x"], reduce_range=False)
    return "quantize_static per channel", out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["rec", "cls"], choices=["rec", "cls", "det", "minilm"])
    ap.add_argument("--shares", nargs="*", type=float, default=[0.25, 0.5])
    ap.add_argument("--images", type=int, default=64, help="calibration samples (texts for minilm)")
    ap.add_argument("--held", type=int, default=32, help="held-out samples, never in the calibration file")
    args = ap.parse_args()
    paths = ppocr.fetch() if set(args.models) - {"minilm"} else {}
    if "minilm" in args.models:
        paths["minilm"] = minilm.model_path()
    note(f"{args.images} calibration samples (the library holds out its default share of them and solves on "
         f"the rest), {args.held} held out; errors are the largest relative output error over the outputs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            data = samples(name, args.images + args.held)
            calib = {k: v[:args.images] for k, v in data.items()}
            held = {k: v[args.images:] for k, v in data.items()}
            solve = {k: v[:SOLVE_SCORED] for k, v in calib.items()}  # the first of the library's solve part
            np.savez(tmp / f"{name}.npz", **calib)
            batch = BATCH[name]
            for share in args.shares:
                t = time.perf_counter()
                options = Options(batch_size=batch, channels=share)
                prep = prepare(paths[name], tmp / f"{name}.npz", options)
                cuts, _ = plan_cuts(prep, share, options.damp, options.bias_correction)
                independent = apply_cuts(prep.model, prep.layers, cuts, options.bias_correction)[0]
                planned = time.perf_counter() - t
                t = time.perf_counter()
                again = cut_sequentially(prep, cuts, options)[0]
                recut = time.perf_counter() - t
                for made, model, seconds in (("independently", independent, planned),
                                             ("again wave after wave", again, planned + recut)):
                    errors = scored(name, paths[name], model, solve, held, batch)
                    rows.append([name, share, made, f"{errors[0]:.4f}", f"{errors[1]:.4f}", errors[2],
                                 f"{seconds:.0f}"])
                    print_table(HEADER, rows, "channel cuts made both ways (so far)")
            t = time.perf_counter()
            label, out = baseline(name, paths[name], calib, tmp)
            errors = scored(name, paths[name], out, solve, held, batch)
            rows.append([name, "", label, f"{errors[0]:.4f}", f"{errors[1]:.4f}", errors[2],
                         f"{time.perf_counter() - t:.0f}"])
            print_table(HEADER, rows, "channel cuts made both ways (so far)")
    print_table(HEADER, rows, "channel cuts made both ways")


if __name__ == "__main__":
    main()
    record()
