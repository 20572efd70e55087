"""The LC toolkit's compression families solved post-training on the layer objective
‖(W − Ŵ)X‖²: codebooks (16 values, per row and per layer), binary and ternary, and low-rank at
the rank that stores as many bytes as 4-bit weights, against uniform 4-bit OBQ and
round-to-nearest. Losses are relative to the dense layer's output energy ‖WX‖².

    python bench/lc_solvers.py                    # 256x1152 and 768x768
    python bench/lc_solvers.py --shapes 64x256    # others
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from problems import layer_problem  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.solver import fit_uniform_grid, layer_loss, quantize  # noqa: E402
from onnxobc.solver.codebook import codebook, quantize_fitted, sign_grid  # noqa: E402
from onnxobc.solver.lowrank import low_rank  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="*", default=["256x1152", "768x768"])
    args = ap.parse_args()
    rows_out = []
    for shape in args.shapes:
        rows, cols = map(int, shape.split("x"))
        W, H = layer_problem(rows, cols)
        energy = layer_loss(W, 0, H)
        r4 = max(1, rows * cols // (8 * (rows + cols)))  # float32 factors as large as 4-bit codes
        runs = [
            ("uniform 4-bit, OBQ", rows * cols / 2 + 4 * rows, lambda: quantize(W, H, fit_uniform_grid(W, 4))),
            ("uniform 4-bit, RTN", rows * cols / 2 + 4 * rows,
             lambda: quantize(W, H, fit_uniform_grid(W, 4), method="rtn")),
            ("codebook 16 per row", rows * cols / 2 + 64 * rows, lambda: codebook(W, H, 16, per_row=True)),
            ("codebook 16 per layer", rows * cols / 2 + 64, lambda: codebook(W, H, 16)),
            ("ternary", rows * cols / 4 + 4 * rows, lambda: quantize_fitted(W, H, sign_grid(W, H, True), "sign")),
            ("ternary, RTN", rows * cols / 4 + 4 * rows, lambda: quantize(W, H, sign_grid(W, H, True), method="rtn")),
            ("binary", rows * cols / 8 + 4 * rows, lambda: quantize_fitted(W, H, sign_grid(W, H, False), "sign")),
            ("binary, RTN", rows * cols / 8 + 4 * rows, lambda: quantize(W, H, sign_grid(W, H, False), method="rtn")),
            (f"low-rank r={r4}", 4 * r4 * (rows + cols), lambda: low_rank(W, H, [r4])[0]),
        ]
        for name, nbytes, fn in runs:
            t = time.perf_counter()
            res = fn()
            rows_out.append([shape, name, f"{nbytes / 1024:.0f}", f"{res.loss / energy:.5f}",
                             f"{time.perf_counter() - t:.1f}"])
            print_table(["shape", "compression", "KiB stored", "layer loss / ‖WX‖²", "s"], rows_out,
                        "LC families on the layer objective (so far)")


if __name__ == "__main__":
    main()
