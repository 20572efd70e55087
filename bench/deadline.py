"""The time budget's prediction against the clock: for layer shapes from small to MiniLM's FFN
output (384 × 1536), the exact 4-bit OBQ solve's time predicted by solver/cost.py (its work model at
the rate a small solve measured) beside the time it took, and GPTQ's time on the same
problem; then a whole encoder (all-MiniLM-L6-v2, or BERT-base-sized all-mpnet-base-v2) at
--wbits 4 with a --max-time that affords nothing (every layer GPTQ), one that affords half of its
predicted exact time, the default (10 minutes, where that is less than the prediction) and
--method exact: wall time and output error.

    python bench/deadline.py [--shapes 64x256 128x512 256x768 384x1536] [--model minilm|mpnet|none]
                             [--runs half default exact]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from evidence import record
from problems import layer_problem
from tables import note, print_table

from onnxobc.solver import cost, fit_uniform_grid, quantize


MODELS = {"minilm": "all-MiniLM-L6-v2 (36 MatMuls)", "mpnet": "all-mpnet-base-v2 (BERT-base size, 72 MatMuls)"}


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def shapes_table(shapes):
    rate = cost.seconds_per_work("cpu")
    rows = []
    for text in shapes:
        r, c = (int(x) for x in text.split("x"))
        W, H = layer_problem(r, c, seed=0)
        grid = fit_uniform_grid(W, 4, True)
        predicted = cost.exact_work(r, c) * rate
        exact = timed(quantize, W, H, grid, method="exact", device="cpu")
        gptq = timed(quantize, W, H, grid, method="gptq")
        rows.append([f"{r}×{c}", f"{predicted:.2f}", f"{exact:.2f}", f"{exact / predicted:.2f}", f"{gptq:.3f}"])
    note(f"exact 4-bit OBQ on the CPU; the rate, {rate:.3g} s per unit of rows·(cols² + cols³/{cost.CACHE_COLS:g}), "
         "measured by a "
         f"{cost.PROBE_SHAPE[0]}×{cost.PROBE_SHAPE[1]} solve")
    print_table(["shape", "predicted exact s", "exact s", "measured / predicted", "GPTQ s"], rows,
                title="exact solve time, predicted and measured")


def model_table(name: str, calib: int, runs: list):
    import importlib

    encoder = importlib.import_module(name)
    dense = encoder.model_path()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        np.savez(tmp / "calib.npz", **encoder.feeds(calib))

        def run(name, *extra):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "onnxobc", "compress", str(dense), str(tmp / f"{name}.onnx"),
                                "--calib", str(tmp / "calib.npz"), "--batch-size", "32", "--wbits", "4", "--report",
                                str(tmp / f"{name}.json"), *extra], capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{name} failed: {r.stderr[-1000:]}")
            rep = json.loads((tmp / f"{name}.json").read_text())
            t, err = rep.get("time_budget") or {}, next(iter(rep["verification"]["relative_output_error"].values()))
            rows.append([" ".join(extra) or "(the defaults)", f"{time.perf_counter() - t0:.0f}", f"{rep['seconds']:.0f}",
                         str(len(t["fast_method_layers"])) if t else "-", f"{err:.4f}"])
            return rep

        t0 = time.perf_counter()
        predicted = run("fast", "--max-time", "1e-9s")["time_budget"]["predicted_exact_seconds"]  # all GPTQ
        for r in runs:
            if r == "default" and predicted <= 600:
                continue  # the default budget affords every exact solve: the same as --method exact
            t0 = time.perf_counter()
            run(r, *{"half": ["--max-time", f"{predicted / 2:.1f}s"], "default": [],
                     "exact": ["--method", "exact"]}[r])
    note(f"{MODELS[name]}, --wbits 4, {calib} calibration texts (a quarter held out); its exact solves "
         f"predicted at {predicted:.0f} s in total; a budget of 1e-9 s gives every layer GPTQ, none is the "
         "default budget of 10 minutes")
    print_table(["options", "wall s", "compress s", "layers given GPTQ", "relative output error"], rows,
                title="a time budget on a whole model")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["64x256", "128x512", "256x768", "384x1536"])
    ap.add_argument("--model", choices=[*MODELS, "none"], default="minilm",
                    help="the whole model: tests/minilm.py's or tests/mpnet.py's encoder, or none")
    ap.add_argument("--calib", type=int, default=128, help="calibration texts")
    ap.add_argument("--runs", nargs="*", choices=["half", "default", "exact"], default=["half", "default", "exact"],
                    help="the runs after the one that affords nothing (which predicts the exact time)")
    args = ap.parse_args()
    if args.shapes:
        shapes_table(args.shapes)
    if args.model != "none":
        model_table(args.model, args.calib, args.runs)


if __name__ == "__main__":
    main()
    record()
