"""`onnxobc tradeoff` with its default levels as a user runs it, on PP-OCRv4 rec (or the shipped
digits model): the wall time of the whole command in its own process, its time per stage, and
every point of the curves (bytes, compression ratio, relative output error on the held-out
samples, speedup on onnxruntime CPU timed in turns with the dense model).

    python bench/tradeoff.py [--model rec|digits] [--calib 32] [--batch-size 1]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"


def setup(name: str, calib: int, tmp: pathlib.Path) -> tuple:
    if name == "digits":
        return DIGITS / "mlp.onnx", DIGITS / "calib.npz"
    import ppocr

    np.savez(tmp / "rec.npz", x=ppocr.rec_inputs(calib))
    return ppocr.fetch()["rec"], tmp / "rec.npz"


def stage_seconds(stderr: str) -> dict:
    """The last time each progress stage printed (its bar's elapsed seconds when it finished)."""
    seconds = {}
    for line in stderr.replace("\r", "\n").splitlines():
        m = re.match(r"\s*(\w[\w ]*?)\s+\[[#.]+\]\s+\S+\s+([\d.]+) s", line)
        if m:
            seconds[m.group(1)] = float(m.group(2))
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rec", choices=["rec", "digits"])
    ap.add_argument("--calib", type=int, default=32, help="rendered text lines for rec (a quarter held out)")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        model, calib = setup(args.model, args.calib, tmp)
        cmd = [sys.executable, "-m", "onnxobc", "tradeoff", str(model), "--calib", str(calib), "--out",
               str(tmp / "out"), "--batch-size", str(args.batch_size), "--no-plot"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode:
            sys.exit(f"tradeoff failed: {r.stderr[-2000:]}")
        report = json.loads((tmp / "out" / "tradeoff.json").read_text())
    stages = stage_seconds(r.stderr)
    print_table(["stage", "s"], [[k, f"{v:.0f}"] for k, v in stages.items()] + [["whole command", f"{wall:.0f}"]],
                title="time")
    rows = [[p["family"], p["level"], str(p["bytes"]), f"{p['compression_ratio']:.2f}x", f"{p['error']:.4f}",
             f"{p['speedup']:.2f}x" if "speedup" in p else "-"] for p in report["points"]]
    print_table(["family", "level", "bytes", "compression", "rel. output error", "speedup"], rows,
                title=f"{len(rows)} points")
    note(f"`onnxobc tradeoff {model.name} --calib … --batch-size {args.batch_size} --no-plot`, default levels, "
         f"every layer exact; {'%d rendered text lines (a quarter held out)' % args.calib if args.model == 'rec' else 'the shipped calibration file'}; "
         f"dense {report['dense_seconds'] * 1e3:.2f} ms per batch; {wall:.0f} s wall in all")


if __name__ == "__main__":
    main()
    record()
