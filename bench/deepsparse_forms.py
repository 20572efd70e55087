"""Which forms DeepSparse runs fast on this CPU, at batch 1: dense, float 4-block sparsity
(magnitude, blocks of 4 input channels across the kernel), int8 in operator form (quantize_static
QOperator: QLinearConv, per-tensor or per-channel weights) and QDQ form, and 4-blocks with
QLinearConv; on PP-OCRv4 det and a synthetic stack of 128-channel 3×3 Conv at 56×56, plus
onnxobc's own `--block4 0.8 --wbits 8 --abits 8 --runtime deepsparse` output of that stack. Each
model's time is the median of turns in one DeepSparse worker (runtimes/deepsparse/setup.sh).

    python bench/deepsparse_forms.py [--models det stack]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
import ppocr  # noqa: E402
from pipeline import quantize_static  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

from onnxobc.graph.model import load_model  # noqa: E402
from onnxobc.graph.qdq import ensure_opset  # noqa: E402
from onnxobc.pipeline import Options, compress  # noqa: E402
from onnxobc import runtimes  # noqa: E402


def conv_stack(layers=6, channels=128, size=56, seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        c_in = 3 if i == 0 else channels
        w = (rng.standard_normal((channels, c_in, 3, 3)) * np.sqrt(2 / (c_in * 9))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, size, size])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", channels, size, size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def block_pruned(model: onnx.ModelProto, sparsity: float) -> onnx.ModelProto:
    """Every Conv weight with at least 16 input channels (a multiple of 4) pruned by magnitude in
    blocks of 4 input channels spanning the kernel: a timing form, not a solver."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        w = numpy_helper.to_array(t)
        if w.ndim == 4 and w.shape[1] >= 16 and w.shape[1] % 4 == 0:
            o, i = w.shape[:2]
            norms = np.abs(w).reshape(o, i // 4, 4, -1).sum(axis=(2, 3))
            keep = np.repeat(norms > np.quantile(norms, sparsity), 4, axis=1)[:, :, None, None]
            t.CopyFrom(numpy_helper.from_array((w * keep).astype(np.float32), t.name))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["det", "stack"], choices=["det", "stack"])
    args = ap.parse_args()
    deepsparse = runtimes.get("deepsparse")
    reason = deepsparse.available()
    if reason:
        sys.exit(f"DeepSparse: {reason}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            if name == "det":
                base, x = ensure_opset(load_model(ppocr.fetch()["det"]), 13), ppocr.det_inputs(8)
            else:
                base = conv_stack()
                x = np.random.default_rng(1).standard_normal((16, 3, 56, 56)).astype(np.float32)
            models = {"dense": base}
            for s in (0.7, 0.8, 0.9):
                models[f"4-blocks {s:.0%}"] = block_pruned(base, s)
            for label, src in (("dense", base), ("4-blocks 80%", models["4-blocks 80%"])):
                onnx.save(src, tmp / "in.onnx")
                for form, operator, per_channel in (("QLinearConv per-tensor", True, False),
                                                    ("QLinearConv per-channel", True, True),
                                                    ("QDQ per-channel", False, True)):
                    if label != "dense" and form != "QLinearConv per-tensor":
                        continue
                    out = tmp / f"{name}-{len(models)}.onnx"
                    quantize_static(tmp / "in.onnx", out, x, reduce_range=False, operator_form=operator,
                                    per_channel=per_channel)
                    models[f"{label} + {form}" if label != "dense" else form] = onnx.load(out)
            if name == "stack":
                np.savez(tmp / "calib.npz", x=x)
                onnx.save(base, tmp / "stack.onnx")
                compress(tmp / "stack.onnx", tmp / "obc.onnx", tmp / "calib.npz",
                         Options(block4=0.8, wbits=8, abits=8, runtime="deepsparse"))
                models["onnxobc b4-0.8 + w8a8 (QLinearConv)"] = onnx.load(tmp / "obc.onnx")
            sec = deepsparse.latencies(models, {"x": x[:1]})
            for k, v in sec.items():
                rows.append([name, k, f"{v * 1e3:.2f}", f"{sec['dense'] / v:.2f}x"])
            print_table(["model", "form", "ms per run", "speedup"], rows, "DeepSparse, batch 1 (so far)")


if __name__ == "__main__":
    main()
    record()
