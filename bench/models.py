"""The exact solvers over whole-model layer shapes: ResNet50 (the 53 convolutions and the fc,
shapes from the architecture) and BERT-base (12 layers × four 768×768, 768→3072, 3072→768):
4-bit OBQ, 2:4 and the unstructured database (the 43 levels of sparsity_grid), per shape and in
total, on the CPU (NumPy + numba) or, with --device cuda, on a GPU through CuPy.

    python bench/models.py                          # both models, all three targets
    python bench/models.py --model resnet50 --targets obq4
    python bench/models.py --device cuda            # needs CuPy and a device

Layers of the same shape are the same amount of work (problems are made alike, the solvers'
work depends on the shape only), so each distinct shape is solved once, on its own problem, and
its time counts once per layer of that shape; the table lists the count. Hessians come from
correlated ReLU inputs (bench/problems.py).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import platform
import sys
import time


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from problems import layer_problem  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.solver import fit_uniform_grid, prune_nm, prune_unstructured, quantize, sparsity_grid  # noqa: E402
from onnxobc.solver.backend import array_module  # noqa: E402


def resnet50_shapes() -> list:
    """(rows, cols) of every conv and the fc: cols = C_in · k · k."""
    shapes = [(64, 3 * 7 * 7)]
    c_in = 64
    for width, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for b in range(blocks):
            shapes += [(width, c_in), (width, width * 9), (4 * width, width)]
            if b == 0:
                shapes.append((4 * width, c_in))  # the projection shortcut
            c_in = 4 * width
    return shapes + [(1000, 2048)]


def bert_base_shapes() -> list:
    return 12 * ([(768, 768)] * 4 + [(3072, 768), (768, 3072)])


MODELS = {"resnet50": resnet50_shapes, "bert": bert_base_shapes}
TARGETS = {
    "obq4": ("4-bit OBQ", lambda W, H, eng: quantize(W, H, fit_uniform_grid(W, 4, True), **eng)),
    "nm24": ("2:4 ExactOBS", lambda W, H, eng: prune_nm(W, H, 2, 4, **eng)),
    "db": ("unstructured, 43 levels", lambda W, H, eng: prune_unstructured(W, H, sparsity_grid(), **eng)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["resnet50", "bert", "both"], default="both")
    ap.add_argument("--targets", default="obq4,nm24,db", help="comma-separated: obq4, nm24, db")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    targets = args.targets.split(",")
    xp = array_module(args.device)
    eng = dict(device=args.device)
    print(f"# bench/models.py on {platform.processor() or platform.machine()}, device {args.device} ({xp.__name__}), "
          "float32; each distinct shape solved once and counted once per layer of that shape")
    models = ["resnet50", "bert"] if args.model == "both" else [args.model]
    warm = layer_problem(64, 256)
    for t in targets:  # compile the numba kernels and touch the workspace outside the timings
        TARGETS[t][1](*warm, eng)
    totals = []
    for model in models:
        counts = collections.Counter(MODELS[model]())
        rows, sums = [], {t: 0.0 for t in targets}
        for (r, c), n in sorted(counts.items(), key=lambda kv: kv[0][0] * kv[0][1] ** 2):
            W, H = layer_problem(r, c)
            times = []
            for t in targets:
                start = time.perf_counter()
                TARGETS[t][1](W, H, eng)
                if args.device == "cuda":
                    xp.cuda.Device().synchronize()
                times.append(time.perf_counter() - start)
                sums[t] += n * times[-1]
            rows.append([f"{r}x{c}", str(n)] + [f"{s:.2f}" for s in times])
            print_table(["shape", "layers"] + [f"{TARGETS[t][0]} s per layer" for t in targets], rows,
                        f"{model} (so far)")
        totals.append([model, str(sum(counts.values()))] + [f"{sums[t]:.0f} s ({sums[t] / 60:.1f} min)"
                                                            for t in targets])
    print_table(["model", "layers"] + [f"{TARGETS[t][0]} total" for t in targets], totals,
                f"totals on {args.device}")


if __name__ == "__main__":
    main()
