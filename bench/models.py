"""The exact solvers over whole-model layer shapes: ResNet50 (the 53 convolutions and the fc,
shapes from the architecture) and BERT-base (12 layers × four 768×768, 768→3072, 3072→768):
4-bit OBQ, 2:4 and the unstructured database (the 43 levels of sparsity_grid), and the Hessian
sums over a calibration set (128 images at 224×224, or 128 sequences of 128 tokens), per shape
and in total, on the CPU (NumPy + numba) or, with --device cuda, on a GPU through CuPy.

    python bench/models.py                          # both models, all four targets
    python bench/models.py --model resnet50 --targets obq4
    python bench/models.py --device cuda            # needs CuPy and a device
    python bench/models.py --engine deferred        # the array-module path (CuPy's) run on NumPy

Layers of the same shape are the same amount of work (problems are made alike, the solvers'
work depends on the shape only), so each distinct shape is solved once, on its own problem, and
its time counts once per layer of that shape; the table lists the count. 2:4 skips the stem
(147 columns), which compress leaves dense. Hessians come from
correlated ReLU inputs (bench/problems.py). The Hessian target streams each layer's calibration
samples (positions × 128 inputs, in batches of 8 inputs, as the capture feeds them) into a
HessianAccumulator on the device.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from problems import layer_problem  # noqa: E402
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc.solver import (HessianAccumulator, fit_uniform_grid, prune_nm, prune_unstructured, quantize,  # noqa: E402
                            sparsity_grid)
from onnxobc.solver.backend import array_module  # noqa: E402

CALIB = 128  # calibration inputs
FEED = 8  # inputs per capture batch


def resnet50_shapes() -> list:
    """(rows, cols, output positions per image) of every conv and the fc: cols = C_in · k · k."""
    shapes = [(64, 3 * 7 * 7, 112 * 112)]
    c_in = 64
    for (width, blocks), side in zip([(64, 3), (128, 4), (256, 6), (512, 3)], (56, 28, 14, 7)):
        for b in range(blocks):
            first = side if b or width == 64 else 2 * side  # the first 1×1 of a strided stage reads the larger map
            shapes += [(width, c_in, first * first), (width, width * 9, side * side), (4 * width, width, side * side)]
            if b == 0:
                shapes.append((4 * width, c_in, side * side))  # the projection shortcut
            c_in = 4 * width
    return shapes + [(1000, 2048, 1)]


def bert_base_shapes() -> list:
    return 12 * ([(768, 768, 128)] * 4 + [(3072, 768, 128), (768, 3072, 128)])


def accumulate(cols: int, positions: int, device: str, xp):
    """A layer's Hessian over CALIB inputs, fed FEED at a time (one batch's samples reused: the
    sums' cost does not depend on the values)."""
    X = np.random.default_rng(0).standard_normal((FEED * positions, cols)).astype(np.float32)
    acc = HessianAccumulator(cols, device)
    for _ in range(CALIB // FEED):
        acc.add_batch(X)
    return acc.hessian


MODELS = {"resnet50": resnet50_shapes, "bert": bert_base_shapes}
TARGETS = {
    "obq4": ("4-bit OBQ", lambda W, H, eng: quantize(W, H, fit_uniform_grid(W, 4, True), **eng)),
    "nm24": ("2:4 ExactOBS", lambda W, H, eng: prune_nm(W, H, 2, 4, **eng)),
    "db": ("unstructured, 43 levels", lambda W, H, eng: prune_unstructured(W, H, sparsity_grid(), **eng)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["resnet50", "bert", "both"], default="both")
    ap.add_argument("--targets", default="obq4,nm24,db,hessian", help="comma-separated: obq4, nm24, db, hessian")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--engine", default="auto", choices=["auto", "fused", "deferred"])
    args = ap.parse_args()
    targets = args.targets.split(",")
    xp = array_module(args.device)
    eng = dict(device=args.device, engine=args.engine)
    note(f"models.py on {platform.processor() or platform.machine()}, device {args.device} ({xp.__name__}), "
          f"engine {args.engine}, float32; each distinct shape solved once and counted once per layer of that shape")
    models = ["resnet50", "bert"] if args.model == "both" else [args.model]
    warm = layer_problem(64, 256)
    for t in targets:  # compile the numba kernels and touch the workspace outside the timings
        if t == "hessian":
            accumulate(256, 64, args.device, xp)
        else:
            TARGETS[t][1](*warm, eng)
    names = [("Hessians" if t == "hessian" else TARGETS[t][0]) for t in targets]
    totals = []
    for model in models:
        counts = collections.Counter(MODELS[model]())
        rows, sums = [], {t: 0.0 for t in targets}
        for (r, c, positions), n in sorted(counts.items(), key=lambda kv: (kv[0][0] * kv[0][1] ** 2, kv[0][2])):
            W, H = layer_problem(r, c)
            times = []
            for t in targets:
                if t == "nm24" and c % 4:
                    times.append(None)  # the stem's 3·7·7 columns: left dense, as compress does
                    continue
                start = time.perf_counter()
                if t == "hessian":
                    accumulate(c, positions, args.device, xp)
                else:
                    TARGETS[t][1](W, H, eng)
                if args.device == "cuda":
                    xp.cuda.Device().synchronize()
                times.append(time.perf_counter() - start)
                sums[t] += n * times[-1]
            rows.append([f"{r}x{c}", str(positions * CALIB), str(n)] + ["—" if s is None else f"{s:.2f}" for s in times])
            print_table(["shape", "samples", "layers"] + [f"{name} s per layer" for name in names], rows,
                        f"{model} (so far)")
        totals.append([model, str(sum(counts.values()))] + [f"{sums[t]:.0f} s ({sums[t] / 60:.1f} min)"
                                                            for t in targets])
    print_table(["model", "layers"] + [f"{name} total" for name in names], totals,
                f"totals on {args.device}, engine {args.engine}")


if __name__ == "__main__":
    main()
    record()
