"""Layer solver benchmark: speed of the deferred-downdate fast path against the eager oracle,
and layer loss of ExactOBS / OBQ against magnitude, SparseGPT, round-to-nearest and GPTQ.

    python bench/solver.py                      # the five issue shapes (about an hour on 2 cores)
    python bench/solver.py --shapes 256x1152    # some of them
    python bench/solver.py --quick              # small shapes, a minute

The eager oracle is timed on a subset of rows and extrapolated linearly (rows are independent),
which the table says. Times are wall-clock seconds on this machine, fast and eager measured in
the same run, both after a first call that touches the process-wide workspace (its time is the
last column: a one-time cost per process, not per layer).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from problems import layer_problem  # noqa: E402
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc.solver import fit_uniform_grid, prune_nm, prune_unstructured, quantize  # noqa: E402
from onnxobc.solver.backend import array_module  # noqa: E402
from onnxobc.solver.batching import DEFAULT_MEM, row_batches  # noqa: E402

SHAPES = ["256x1152", "768x768", "768x3072", "3072x768", "512x4608"]
QUICK = ["64x256", "128x512"]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=None, help="ROWSxCOLS, default: the issue's five")
    ap.add_argument("--quick", action="store_true", help="two small shapes")
    ap.add_argument("--eager-rows", type=int, default=None,
                    help="rows the eager oracle is timed on (default: enough for 128 MB of inverses, "
                         "well past the caches, so the extrapolation is not flattered)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    shapes = args.shapes or (QUICK if args.quick else SHAPES)
    xp = array_module(args.device)
    eng = dict(device=args.device, dtype=np.dtype(args.dtype).type)
    note(f"solver.py on {platform.processor() or platform.machine()}, device {args.device} "
          f"({xp.__name__}), {args.dtype}; H from {2}×cols correlated ReLU samples, 1% dampening")

    speed, losses = [], []
    for shape in shapes:
        rows, cols = map(int, shape.split("x"))
        W, H = layer_problem(rows, cols)
        g4, g3 = fit_uniform_grid(W, 4, True), fit_uniform_grid(W, 3, True)
        # the first call touches the process-wide workspace (a one-time cost, slow on this
        # sandbox); both engines are then timed with it warm
        R = row_batches(rows, cols, np.dtype(args.dtype).itemsize, DEFAULT_MEM)[0].stop
        _, t_touch = timed(lambda: quantize(W[:R], H, fit_uniform_grid(W[:R], 4, True), **eng))
        q4, t_fast = timed(lambda: quantize(W, H, g4, **eng))
        sub = min(rows, args.eager_rows or max(2, -(-(1 << 25) // (cols * cols))))
        _, t_sub = timed(lambda: quantize(W[:sub], H, fit_uniform_grid(W[:sub], 4, True), engine="eager", **eng))
        t_eager = t_sub * rows / sub
        unstr, t_db = timed(lambda: prune_unstructured(W, H, [0.5, 0.75, 0.9], **eng))
        nm, t_nm = timed(lambda: prune_nm(W, H, 2, 4, **eng))
        q3 = quantize(W, H, g3, **eng)
        label = "measured" if sub == rows else f"extrapolated from {sub} rows"
        speed.append([shape, f"{t_fast:.1f}", f"{t_eager:.1f} ({label})", f"{t_eager / t_fast:.1f}x",
                      f"{t_db:.1f}", f"{t_nm:.1f}", f"{t_touch:.1f} ({R} rows)"])
        print_table(["shape", "OBQ 4-bit fast s", "OBQ 4-bit eager s", "eager/fast", "unstructured 3 levels s",
                     "2:4 s", "first call s"], speed, "speed (so far)")
        s50 = unstr[0]
        mag50 = prune_unstructured(W, H, [0.5], method="magnitude")[0]
        sg50 = prune_unstructured(W, H, [0.5], method="sparsegpt")[0]
        losses.append([shape, "50%", f"{s50.loss:.4g}", f"{mag50.loss:.4g}", f"{sg50.loss:.4g}", "",
                       f"{s50.loss / sg50.loss:.3f}"])
        sg24 = prune_nm(W, H, 2, 4, method="sparsegpt")
        losses.append([shape, "2:4", f"{nm.loss:.4g}", f"{prune_nm(W, H, 2, 4, method='magnitude').loss:.4g}",
                       f"{sg24.loss:.4g}", "", f"{nm.loss / sg24.loss:.3f}"])
        for bits, q, g in [(4, q4, g4), (3, q3, g3)]:
            rtn, gptq = quantize(W, H, g, method="rtn"), quantize(W, H, g, method="gptq")
            losses.append([shape, f"{bits}-bit", f"{q.loss:.4g}", f"{rtn.loss:.4g}", "", f"{gptq.loss:.4g}",
                           f"{q.loss / gptq.loss:.3f}"])
        print_table(["shape", "target", "ExactOBS/OBQ", "magnitude/RTN", "SparseGPT", "GPTQ",
                     "exact / best baseline"], losses, "layer loss ‖(W − Ŵ)X‖²/N (so far)")


if __name__ == "__main__":
    main()
    record()
