"""The output files of reference compressions, as SHA-256 hashes: a change that should not change
behaviour (a refactor) must leave every hash as it was. Runs `onnxobc compress` as a user types it
on the shipped digits model and on PP-OCRv4 det and rec (fetched like the tests do, calibrated on
rendered text) with each reference setting (and with --settings all, every other family and
export form), and prints a table of the hashes (saved like every bench's tables, in
bench/results/). --against FILE marks each hash as the same as in an earlier run's file, or not.

BLAS and onnxruntime round differently with other thread counts, so the runs pin one thread; and
they pass --max-time none, so no layer is solved by a faster method than its setting asks.

    python bench/outputs.py [--models digits det rec] [--settings NAME … | all] [--against FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import ppocr  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

ROOT = pathlib.Path(__file__).parents[1]
SETTINGS = {
    "nm2:4": ["--nm", "2:4"],
    "s0.75": ["--sparsity", "0.75"],
    "w4": ["--wbits", "4"],
    "w8a8": ["--wbits", "8", "--abits", "8"],
    "lr0.5": ["--rank", "0.5"],
    "ternary": ["--codebook", "ternary"],
    "size0.3": ["--size", "0.3"],
}
# more forms, on the shipped model (seconds each): every family and export form
MORE = {
    "b4-0.8": ["--block4", "0.8"],
    "nm2:4+w4": ["--nm", "2:4", "--wbits", "4"],
    "s0.5+w8": ["--sparsity", "0.5", "--wbits", "8"],
    "w3asym": ["--wbits", "3", "--asym"],
    "w4gptq": ["--wbits", "4", "--method", "gptq"],
    "nm2:4sparsegpt": ["--nm", "2:4", "--method", "sparsegpt"],
    "w4nbits": ["--wbits", "4", "--matmulnbits"],
    "w8nbits": ["--wbits", "8", "--matmulnbits"],
    "w7a8": ["--wbits", "7", "--abits", "8"],
    "w8a8trt": ["--wbits", "8", "--abits", "8", "--runtime", "tensorrt"],
    "w8a8ds": ["--wbits", "8", "--abits", "8", "--runtime", "deepsparse"],
    "w4+o": ["--wbits", "4", "--outliers", "0.01"],
    "w2+r": ["--wbits", "2", "--plus-rank", "0.05"],
    "w4+o+r": ["--wbits", "4", "--outliers", "0.01", "--plus-rank", "0.05"],
    "s0.9+r": ["--sparsity", "0.9", "--plus-rank", "0.05"],
    "lr0.5+w4": ["--rank", "0.5", "--wbits", "4"],
    "cb16": ["--codebook", "16"],
    "cb16-row": ["--codebook", "16-row"],
    "binary": ["--codebook", "binary"],
    "w4nobias": ["--wbits", "4", "--no-bias-correction"],
    "size0.15": ["--size", "0.15"],
    "flops3": ["--flops", "3x"],
    "bops8": ["--bops", "8x"],
}
ALL = {**SETTINGS, **MORE}
PPOCR_IMAGES = 8
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def model_and_calib(name: str, tmp: pathlib.Path) -> tuple:
    if name == "digits":
        return ROOT / "models" / "digits" / "mlp.onnx", ROOT / "models" / "digits" / "calib.npz"
    path = ppocr.fetch()[name]
    calib = tmp / f"{name}.npz"
    np.savez(calib, x=ppocr.det_inputs(PPOCR_IMAGES) if name == "det" else ppocr.rec_inputs(PPOCR_IMAGES))
    return path, calib


def run(model, calib, setting: str, tmp: pathlib.Path) -> tuple:
    """(the output's SHA-256, seconds) of one `onnxobc compress`."""
    out = tmp / f"{pathlib.Path(model).stem}.{setting}.onnx"
    cmd = [sys.executable, "-m", "onnxobc", "compress", str(model), str(out), "--calib", str(calib),
           *ALL[setting], "--device", "cpu", "--max-time", "none"]  # every reference solve as it is asked
    if ALL[setting][0] in ("--size", "--flops", "--bops"):
        cmd += ["--db", str(tmp / f"{pathlib.Path(model).stem}.db")]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return hashlib.sha256(out.read_bytes()).hexdigest(), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=["digits", "det", "rec"], choices=["digits", "det", "rec"])
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(ALL) + ["all"],
                    help="the reference settings by default; all: those and every other form")
    ap.add_argument("--against", help="a bench/results file of an earlier run: mark each hash same or DIFFERENT")
    args = ap.parse_args()
    settings = list(ALL) if "all" in args.settings else args.settings
    before = {}
    if args.against:
        for t in json.loads(pathlib.Path(args.against).read_text())["tables"]:
            before.update({f"{r[0]} {r[1]}": r[2] for r in t["rows"]})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            model, calib = model_and_calib(name, tmp)
            for setting in settings:
                digest, seconds = run(model, calib, setting, tmp)
                key = f"{name} {' '.join(ALL[setting])}"
                same = "" if key not in before else "same" if before[key] == digest else "DIFFERENT"
                rows.append([name, " ".join(ALL[setting]), digest, f"{seconds:.1f}"] + ([same] if before else []))
                print(f"{key}: {digest} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    print_table(["model", "setting", "sha256 of the output", "s"] + (["against"] if before else []), rows)
    record(key="-".join(args.models) + ("-every-form" if "all" in args.settings else ""))
    if any(r[-1] == "DIFFERENT" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
