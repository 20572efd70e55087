"""onnxobc's W8A8 (7-bit weights) against onnxruntime.quantization.quantize_static on PP-OCRv4
det and rec, timed longer than bench/pipeline.py does: three measurements of 30 rounds × 10
runs, the dense, onnxobc and quantize_static sessions taking turns, batch 1.

    python bench/w8a8_speed.py
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import ppocr  # noqa: E402
from pipeline import quantize_static  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.pipeline import Options, compress  # noqa: E402
from onnxobc.runtimes.onnxruntime import compare_latency  # noqa: E402
from onnxobc.sessions import session  # noqa: E402


def main():
    paths = ppocr.fetch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, inputs in [("det", ppocr.det_inputs), ("rec", ppocr.rec_inputs)]:
            x = inputs(64)
            np.savez(tmp / "c.npz", x=x)
            compress(paths[name], tmp / f"{name}.ours.onnx", tmp / "c.npz", Options(wbits=7, abits=8, holdout=0.25))
            quantize_static(paths[name], tmp / f"{name}.qs.onnx", x[:48], False)
            sessions = {"dense": session(paths[name], spinning=False),
                        "ours": session(tmp / f"{name}.ours.onnx", spinning=False),
                        "qs": session(tmp / f"{name}.qs.onnx", spinning=False)}
            for rep in range(3):
                t = compare_latency(sessions, {"x": x[:1]}, rounds=30, repeats=10)
                rows.append([name, str(rep)] + [f"{t[k] * 1e3:.2f}" for k in ("dense", "ours", "qs")]
                            + [f"{t['qs'] / t['ours']:.3f}"])
                print_table(["model", "measurement", "dense ms", "onnxobc W8A8 (w7) ms", "quantize_static ms",
                             "onnxobc speed / quantize_static's"], rows, "W8A8 speed, batch 1 (so far)")


if __name__ == "__main__":
    main()
    record()
