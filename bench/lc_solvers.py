"""The LC toolkit's compression families solved post-training on the layer objective
‖(W − Ŵ)X‖²: codebooks (16 values, per row and per layer), binary and ternary, and low-rank at
the rank that stores as many bytes as 4-bit weights (float factors, or 8-bit and 4-bit
factors at the ranks those bytes buy, against rounding the factors to nearest), against uniform
4-bit OBQ and round-to-nearest; additive combinations (3-bit + a sparse part, 2-bit + low-rank, sparse +
low-rank) at about the bytes of 4-bit; and the LC penalty method against OBS on the same
problems. Losses are relative to the dense layer's output energy ‖WX‖². Bytes count b bits per
code (the LC paper's measure; onnxobc's files hold 2–4-bit codes in INT4 and 5–8-bit codes in
INT8), float32 scales, tables and factors, and 12 bytes per weight of a sparse part (a float32
value and an int64 index, as a sparse initializer stores it).

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
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.solver import fit_uniform_grid, layer_loss, prune_unstructured, quantize  # noqa: E402
from onnxobc.solver.additive import additive, low_rank_part, quantized_part, sparse_part  # noqa: E402
from onnxobc.solver.codebook import codebook, quantize_fitted, sign_grid  # noqa: E402
from onnxobc.solver.lc import lc_penalty, project_rank, project_sparse, project_uniform  # noqa: E402
from onnxobc.solver.lowrank import low_rank, quantized_low_rank  # noqa: E402


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
        n = rows * cols
        d4 = (n / 2) / (12 * n)  # the share a sparse part keeps in the bytes of 4-bit codes
        d_half = d4 / 2  # half of those bytes, the other half to a low-rank part of rank r4 // 2
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
            (f"low-rank r={4 * r4}, 8-bit factors", 4 * r4 * (rows + cols) + 4 * (rows + 4 * r4),
             lambda: quantized_low_rank(W, H, 4 * r4, 8)),
            (f"low-rank r={8 * r4}, 4-bit factors", 4 * r4 * (rows + cols) + 4 * (rows + 8 * r4),
             lambda: quantized_low_rank(W, H, 8 * r4, 4)),
            (f"low-rank r={8 * r4}, 4-bit factors, RTN", 4 * r4 * (rows + cols) + 4 * (rows + 8 * r4),
             lambda: quantized_low_rank(W, H, 8 * r4, 4, method="rtn")),
            # additive, at about the bytes of 4-bit: 3-bit codes leave n/8 bytes, 2-bit ones n/4
            ("3-bit + 1% sparse", n * 3 / 8 + 4 * rows + 12 * 0.01 * n,
             lambda: additive(W, H, [sparse_part(0.01), quantized_part(3)])),
            ("1% sparse alone", 12 * 0.01 * n, lambda: prune_unstructured(W, H, [0.99])[0]),
            ("3-bit alone", n * 3 / 8 + 4 * rows, lambda: quantize(W, H, fit_uniform_grid(W, 3))),
            (f"2-bit + low-rank r={r4 // 2}", n / 4 + 4 * rows + 4 * (r4 // 2) * (rows + cols),
             lambda: additive(W, H, [low_rank_part(r4 // 2), quantized_part(2)])),
            ("2-bit alone", n / 4 + 4 * rows, lambda: quantize(W, H, fit_uniform_grid(W, 2))),
            (f"{d_half:.1%} sparse + low-rank r={r4 // 2}", 12 * d_half * n + 4 * (r4 // 2) * (rows + cols),
             lambda: additive(W, H, [low_rank_part(r4 // 2), sparse_part(d_half)])),
            (f"{d4:.1%} sparse alone", 12 * d4 * n, lambda: prune_unstructured(W, H, [1 - d4])[0]),
            # the LC penalty method on the same problems as the OBS solvers above and below
            ("LC 4-bit (refitted grid)", n / 2 + 4 * rows, lambda: lc_penalty(W, H, project_uniform(4))),
            (f"LC low-rank r={r4}", 4 * r4 * (rows + cols), lambda: lc_penalty(W, H, project_rank(r4))),
            ("ExactOBS 50% sparse", 12 * 0.5 * n, lambda: prune_unstructured(W, H, [0.5])[0]),
            ("LC 50% sparse", 12 * 0.5 * n, lambda: lc_penalty(W, H, project_sparse(0.5))),
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
    record()
