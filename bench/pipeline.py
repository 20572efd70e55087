"""End-to-end compression of the shipped digits model (models/digits): task accuracy on the 360
held-out digits and relative output error against the dense model, exact solvers vs baselines.
With --ppocr, also PP-OCRv4 det and rec (fetched like the tests do, calibrated on rendered text):
relative output error on held-out rendered images and file size.

    python bench/pipeline.py [--ppocr]
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

from onnxobc.pipeline import Options, compress
from tables import print_table

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
RUNS = [
    ("2:4", [("exact", dict(nm=(2, 4))), ("sparsegpt", dict(nm=(2, 4), method="sparsegpt")),
             ("magnitude", dict(nm=(2, 4), method="magnitude"))]),
    ("75 % unstructured", [("exact", dict(sparsity=0.75)), ("sparsegpt", dict(sparsity=0.75, method="sparsegpt")),
                           ("magnitude", dict(sparsity=0.75, method="magnitude"))]),
    ("8-bit weights", [("exact", dict(wbits=8)), ("rtn", dict(wbits=8, method="rtn"))]),
    ("4-bit weights", [("exact", dict(wbits=4)), ("gptq", dict(wbits=4, method="gptq")),
                       ("rtn", dict(wbits=4, method="rtn"))]),
    ("2-bit weights", [("exact", dict(wbits=2)), ("gptq", dict(wbits=2, method="gptq")),
                       ("rtn", dict(wbits=2, method="rtn"))]),
    ("2:4 + 4-bit", [("exact", dict(nm=(2, 4), wbits=4)), ("sparsegpt + gptq", dict(nm=(2, 4), wbits=4, method="gptq")),
                     ("magnitude + rtn", dict(nm=(2, 4), wbits=4, method="rtn"))]),
]


def accuracy(path) -> float:
    test = np.load(DIGITS / "test.npz")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(np.mean(sess.run(None, {"x": test["x"]})[0].argmax(axis=1) == test["label"]))


PPOCR_RUNS = [("8-bit", "exact", dict(wbits=8)), ("8-bit", "rtn", dict(wbits=8, method="rtn")),
              ("4-bit", "exact", dict(wbits=4)), ("4-bit", "gptq", dict(wbits=4, method="gptq")),
              ("4-bit", "rtn", dict(wbits=4, method="rtn"))]


def ppocr_table():
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
    import ppocr

    paths = ppocr.fetch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, inputs in [("det", ppocr.det_inputs), ("rec", ppocr.rec_inputs)]:
            np.savez(pathlib.Path(tmp) / "c.npz", x=inputs(32))
            for target, method, opts in PPOCR_RUNS:
                t = time.perf_counter()
                rep = compress(paths[name], pathlib.Path(tmp) / "m.onnx", pathlib.Path(tmp) / "c.npz", Options(**opts))
                (err,) = rep["verification"]["relative_output_error"].values()
                rows.append([f"PP-OCRv4 {name}", target, method, f"{err:.4f}",
                             f"{rep['bytes']['input'] / rep['bytes']['output']:.2f}x", f"{time.perf_counter() - t:.0f}"])
    header = ["model", "target", "method", "rel. output error", "file smaller", "s"]
    print_table(header, rows, "# PP-OCRv4 from rapidocr-onnxruntime 1.4.4: 32 rendered text images (24 calibrate, "
                "8 held out), weights only")


def main():
    rows = [["dense", "", f"{accuracy(DIGITS / 'mlp.onnx'):.4f}", "0", "1.00x", ""]]
    with tempfile.TemporaryDirectory() as tmp:
        for target, methods in RUNS:
            for name, opts in methods:
                out = pathlib.Path(tmp) / "m.onnx"
                t = time.perf_counter()
                rep = compress(DIGITS / "mlp.onnx", out, DIGITS / "calib.npz", Options(**opts))
                rows.append([target, name, f"{accuracy(out):.4f}",
                             f"{rep['verification']['relative_output_error']['logits']:.4f}",
                             f"{rep['bytes']['input'] / rep['bytes']['output']:.2f}x", f"{time.perf_counter() - t:.1f}"])
    header = ["target", "method", "test accuracy", "rel. output error", "file smaller", "s"]
    print(f"# bench/pipeline.py: models/digits/mlp.onnx ({onnx.load(DIGITS / 'mlp.onnx').graph.name}), "
          "calibration models/digits/calib.npz (384 used, 128 held out for the output error), "
          "accuracy on the 360 test digits; pruned weights stored as float32 zeros, quantized ones as "
          "integer codes + DequantizeLinear")
    print_table(header, rows)
    if "--ppocr" in sys.argv[1:]:
        ppocr_table()


if __name__ == "__main__":
    main()
