"""OBQ, GPTQ and the better of each row, on real transformer layers: for layers of
all-MiniLM-L6-v2 (tests/minilm.py), 4- and 3-bit per-row grids, the relative layer loss
‖(W − Ŵ)X‖² / ‖WX‖² of GPTQ (activation order), OBQ alone (greedy, `gptq_rows=False`) and the
exact method (each row from the solver of lower loss), on the calibration texts the Hessian
came from and on other texts; the share of rows GPTQ wins and each solver's time.

    python bench/obq_rows.py [--layers 0 4 5 30 35] [--bits 4 3] [--texts 96]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc.calib.capture import capture_hessians  # noqa: E402
from onnxobc.graph.layers import discover, weight_array  # noqa: E402
from onnxobc.solver import fit_uniform_grid, layer_loss, prepare, quantize  # noqa: E402


def main():
    import minilm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", nargs="*", type=int, default=[0, 4, 5, 30, 35], help="indices in the model's order")
    ap.add_argument("--bits", nargs="*", type=int, default=[4, 3])
    ap.add_argument("--texts", type=int, default=96, help="calibration texts, and as many other texts")
    args = ap.parse_args()
    model = onnx.load(str(minilm.model_path()))
    layers = discover(model)[0]
    pick = [layers[i] for i in args.layers]
    calib, _ = capture_hessians(model, pick, minilm.feeds(args.texts), batch_size=32)
    other, _ = capture_hessians(model, pick, minilm.feeds(args.texts, skip=4 * args.texts), batch_size=32)
    rows = []
    for bits in args.bits:
        for layer in pick:
            (W,) = layer.matrices(weight_array(model, layer.weight))
            Hc, Ho = calib[layer.weight][0].hessian, other[layer.weight][0].hessian
            Wp, Hp = prepare(W, Hc)
            grid = fit_uniform_grid(Wp, bits, True)
            solved, seconds = {}, {}
            for name, kw in (("GPTQ", dict(method="gptq")), ("OBQ alone", dict(gptq_rows=False)), ("exact", {})):
                t = time.perf_counter()
                solved[name] = quantize(Wp, Hp, grid, **kw)
                seconds[name] = time.perf_counter() - t
            base_c, base_o = layer_loss(W, 0 * W, Hc), layer_loss(W, 0 * W, Ho)
            row = [f"{layer.weight} ({W.shape[0]}×{W.shape[1]})", f"w{bits}"]
            for name, r in solved.items():
                row.append(f"{layer_loss(W, r.weight, Hc) / base_c:.5f} / {layer_loss(W, r.weight, Ho) / base_o:.5f}")
            wins = np.mean(solved["GPTQ"].row_loss < solved["OBQ alone"].row_loss)
            row += [f"{wins:.2f}", " / ".join(f"{seconds[k]:.2f}" for k in solved)]
            rows.append(row)
            print(row, flush=True)
    note(f"relative layer loss on the {args.texts} calibration texts / on {args.texts} other texts; symmetric per-row "
         "grids fitted by least squares, Hessians dampened by 1 % of their mean diagonal")
    print_table(["layer", "bits", "GPTQ", "OBQ alone", "exact (better of each row)", "rows GPTQ wins",
                 "s: GPTQ / OBQ / exact"], rows)


if __name__ == "__main__":
    main()
    record()
