"""End-to-end compression of the shipped digits model (models/digits): task accuracy on the 360
held-out digits and relative output error against the dense model, exact solvers vs baselines.
W8A8 (int8 activations) is compared with onnxruntime.quantization.quantize_static on the same
calibration data. With --ppocr, also PP-OCRv4 det and rec (fetched like the tests do, calibrated on
rendered text: pages for det, line crops for rec): relative output error and task agreement (rec:
decoded text equal to the dense model's; det: text-mask IoU) on rendered images never used in
compress (neither to calibrate nor for its held-out choices), file size, and for W8A8 the latency
on onnxruntime against the dense model and quantize_static's, timed side by side, beside int8
weights alone and independent solves (--sequential off). --ppocr=slow: W8A8 with and without
--slow-int8 keep (compressed at batch 1, as timed) on det, rec and the text-direction classifier
cls. A model name among the parts (--ppocr=w8a8,rec) runs that model alone.

    python bench/pipeline.py [--ppocr | --ppocr=weights | --ppocr=w8a8 | --ppocr=slow][,det|,rec|,cls]
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
from onnxobc.runtimes.onnxruntime import compare_latency
from onnxobc.sessions import session
from evidence import record
from tables import note, print_table

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
    ("hidden neurons removed", [("exact, 30 %", dict(channels=0.3)), ("exact, 50 %", dict(channels=0.5)),
                                ("exact, 70 %", dict(channels=0.7)),
                                ("exact, 50 % + 8-bit", dict(channels=0.5, wbits=8))]),
    ("W8A8 (int8 activations)", [("exact, w8", dict(wbits=8, abits=8)), ("exact, w7", dict(wbits=7, abits=8)),
                                 ("rtn, w7", dict(wbits=7, abits=8, method="rtn"))]),
]


def accuracy(path) -> float:
    test = np.load(DIGITS / "test.npz")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(np.mean(sess.run(None, {"x": test["x"]})[0].argmax(axis=1) == test["label"]))


PPOCR_RUNS = [("8-bit", "exact", dict(wbits=8)), ("8-bit", "rtn", dict(wbits=8, method="rtn")),
              ("4-bit", "exact", dict(wbits=4)), ("4-bit", "gptq", dict(wbits=4, method="gptq")),
              ("4-bit", "rtn", dict(wbits=4, method="rtn"))]
W8A8_RUNS = [("onnxobc exact, int8 weights only", dict(wbits=8)), ("onnxobc exact, w7", dict(wbits=7, abits=8)),
             ("onnxobc exact, w7, --sequential off", dict(wbits=7, abits=8, sequential="off")),
             ("onnxobc rtn, w7", dict(wbits=7, abits=8, method="rtn"))]
SLOW_RUNS = [("onnxobc exact, w7 (int8 where faster)", dict(wbits=7, abits=8, batch_size=1)),
             ("onnxobc exact, w7, --slow-int8 keep", dict(wbits=7, abits=8, batch_size=1, slow_int8="keep"))]
PPOCR_IMAGES, PPOCR_HELD_OUT, PPOCR_TEST = 64, 16, 128  # compress holds out 16 of its 64 for its choices


def quantize_static(src, dst, calib, reduce_range: bool, operator_form: bool = False,
                    per_channel: bool = True, op_types=None) -> None:
    """onnxruntime.quantization's static QDQ quantization, per channel, U8S8, its default MinMax
    calibration, on the same calibration samples (an array for input "x", or {input: array};
    `operator_form`: QLinearConv instead, the form DeepSparse runs as int8; `per_channel` False:
    one weight scale per tensor; `op_types`: only those ops, else its default set). It is given the
    model as onnxobc prepares it:
    Constant-node weights moved to initializers (it quantizes only initializer weights, and
    PP-OCR keeps its weights in Constant nodes) and opset ≥ 13 (per-channel DequantizeLinear)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from onnxobc.graph.model import load_model
    from onnxobc.graph.qdq import ensure_opset

    onnx.save(ensure_opset(load_model(src), 13), str(dst) + ".in.onnx")  # per-channel DQ needs opset 13

    feeds = calib if isinstance(calib, dict) else {"x": calib}
    n = len(next(iter(feeds.values())))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{k: v[i:i + 8] for k, v in feeds.items()} for i in range(0, n, 8)])

        def get_next(self):
            return next(self.feeds, None)

    ort_quantize_static(str(dst) + ".in.onnx", str(dst), Reader(),
                        quant_format=QuantFormat.QOperator if operator_form else QuantFormat.QDQ,
                        per_channel=per_channel, op_types_to_quantize=op_types,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pathlib.Path(str(dst) + ".in.onnx").unlink()


def ctc_text(probs: np.ndarray) -> list:
    """Greedy CTC decoding of the rec model's output (samples, steps, classes): argmax per step,
    repeats collapsed, blanks (class 0) dropped; character ids, not characters."""
    out = []
    for best in probs.argmax(axis=-1):
        keep = np.concatenate([[True], best[1:] != best[:-1]]) & (best != 0)
        out.append(tuple(best[keep]))
    return out


def task_agreement(name: str, dense: np.ndarray, got: np.ndarray) -> str:
    """rec: share of held-out lines whose decoded text equals the dense model's; det: IoU of the
    text masks (probability > 0.3, PP-OCR's threshold) with the dense model's; cls: share of
    held-out lines given the dense model's direction."""
    if name == "rec":
        return f"{np.mean([a == b for a, b in zip(ctc_text(dense), ctc_text(got))]):.3f} text equal"
    if name == "cls":
        return f"{np.mean(dense.argmax(-1) == got.argmax(-1)):.3f} top-1"
    a, b = dense > 0.3, got > 0.3
    return f"{(a & b).sum() / max((a | b).sum(), 1):.3f} mask IoU"


def _error(ref, got) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64)))


def ppocr_tables(parts=("weights", "w8a8")):
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
    import ppocr

    paths = ppocr.fetch()
    rows, w8a8 = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        nets = [("det", ppocr.det_inputs), ("rec", ppocr.rec_inputs)]
        nets += [("cls", ppocr.cls_inputs)] if "slow" in parts else []
        if set(parts) & {"det", "rec", "cls"}:
            nets = [(name, inputs) for name, inputs in nets if name in parts]
        for name, inputs in nets:
            x = inputs(PPOCR_IMAGES + PPOCR_TEST)
            calib, held = x[:PPOCR_IMAGES - PPOCR_HELD_OUT], x[PPOCR_IMAGES:]
            np.savez(tmp / "c.npz", x=x[:PPOCR_IMAGES])
            dense = session(paths[name]).run(None, {"x": held})[0]
            opt = dict(holdout=PPOCR_HELD_OUT / PPOCR_IMAGES)
            for target, method, opts in PPOCR_RUNS if "weights" in parts and name != "cls" else []:
                t = time.perf_counter()
                rep = compress(paths[name], tmp / "m.onnx", tmp / "c.npz", Options(**opts, **opt))
                (err,) = rep["verification"]["relative_output_error"].values()
                got = session(tmp / "m.onnx").run(None, {"x": held})[0]
                rows.append([f"PP-OCRv4 {name}", target, method, f"{err:.4f}", task_agreement(name, dense, got),
                             f"{rep['bytes']['input'] / rep['bytes']['output']:.2f}x", f"{time.perf_counter() - t:.0f}"])
            runs = (W8A8_RUNS if "w8a8" in parts and name != "cls" else []) + (SLOW_RUNS if "slow" in parts else [])
            if not runs:
                continue
            models, seconds = {"dense": paths[name]}, {"dense": 0.0}
            for label, opts in runs:
                models[label], t = tmp / f"{len(models)}.onnx", time.perf_counter()
                compress(paths[name], models[label], tmp / "c.npz", Options(**opts, **opt))
                seconds[label] = time.perf_counter() - t
            for label, reduce in [("quantize_static", False), ("quantize_static reduce_range", True)]:
                models[label], t = tmp / f"{len(models)}.onnx", time.perf_counter()
                quantize_static(paths[name], models[label], calib, reduce)
                seconds[label] = time.perf_counter() - t
            sessions = {k: session(p, spinning=False) for k, p in models.items()}
            latency = compare_latency(sessions, {"x": held[:1]})
            for label, sess in sessions.items():
                got = sess.run(None, {"x": held})[0]
                model = f"PP-OCRv4 {name}" if name != "cls" else "PP-OCR mobile v2.0 cls"
                w8a8.append([model, label, f"{_error(dense, got):.4f}", task_agreement(name, dense, got),
                             f"{latency[label] * 1e3:.1f}", f"{latency['dense'] / latency[label]:.2f}x",
                             f"{latency['quantize_static'] / latency[label]:.2f}x",
                             f"{models['dense'].stat().st_size / pathlib.Path(models[label]).stat().st_size:.2f}x",
                             f"{seconds[label]:.0f}"])
    header = ["model", "target", "method", "rel. output error", "task agreement with dense", "file smaller", "s"]
    if rows:
        print_table(header, rows, f"# PP-OCRv4 from rapidocr-onnxruntime 1.4.4: {PPOCR_IMAGES} rendered text images "
                f"to compress ({PPOCR_IMAGES - PPOCR_HELD_OUT} calibrate, {PPOCR_HELD_OUT} held out for its "
                f"verification), {PPOCR_TEST} others for the figures; weights only")
    header = ["model", "W8A8 by", "rel. output error", "task agreement with dense", "ms / image",
              "speed vs dense", "speed vs quantize_static", "file smaller", "s to make"]
    if w8a8:
        print_table(header, w8a8, "# W8A8 for onnxruntime CPU (U8S8 QDQ, fused int8 kernels), same calibration images; "
                f"figures on the {PPOCR_TEST} others; latency: batch 1, sessions timed in turns in one process (median)")


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
        calib = np.load(DIGITS / "calib.npz")["x"]
        dense = session(DIGITS / "mlp.onnx").run(None, {"x": calib[384:]})[0]
        for label, reduce in [("quantize_static", False), ("quantize_static reduce_range", True)]:
            out = pathlib.Path(tmp) / "q.onnx"
            t = time.perf_counter()
            quantize_static(DIGITS / "mlp.onnx", out, calib[:384], reduce)
            err = _error(dense, session(out).run(None, {"x": calib[384:]})[0])
            rows.append(["W8A8 (int8 activations)", label, f"{accuracy(out):.4f}", f"{err:.4f}",
                         f"{(DIGITS / 'mlp.onnx').stat().st_size / out.stat().st_size:.2f}x",
                         f"{time.perf_counter() - t:.1f}"])
    header = ["target", "method", "test accuracy", "rel. output error", "file smaller", "s"]
    note(f"pipeline.py: models/digits/mlp.onnx ({onnx.load(DIGITS / 'mlp.onnx').graph.name}), "
          "calibration models/digits/calib.npz (384 used, 128 held out for the output error), "
          "accuracy on the 360 test digits; pruned weights stored as zeros (a sparse initializer where that is "
         "smaller), quantized ones as integer codes behind DequantizeLinear")
    print_table(header, rows)
    for arg in sys.argv[1:]:
        if arg.startswith("--ppocr"):
            ppocr_tables(arg.partition("=")[2].split(",") if "=" in arg else ("weights", "w8a8"))


if __name__ == "__main__":
    main()
    record()
