"""A BERT-style sentence encoder (all-MiniLM-L6-v2 from a PyPI wheel, built as ONNX by
tests/minilm.py; with --model mpnet the BERT-base-sized all-mpnet-base-v2, tests/mpnet.py)
compressed by onnxobc and by onnxruntime.quantization.quantize_dynamic, side by side: embedding
cosine with the dense model and nearest-neighbour agreement on held-out texts (standard-library
docstrings joined to fill 32 tokens), latency on onnxruntime CPU (each model timed in turns with
the dense model alone), file size. onnxobc runs: --channels at each share given, dynamic int8 (OBQ
weights; with and without --smooth), both, and --speedup at each factor given (a target out of
reach is a row with the time it took to say so); with --w8a8, static int8 activations too, beside
onnxruntime's quantize_static. --lean leaves out the ablations (--smooth off, each --act-ranges)
for a model where every run takes many minutes; --no-dynamic the dynamic int8 run. Where
compress solved (or cut) both ways (sequential auto), a last table says which way it kept.

    python bench/encoder.py [--model minilm|mpnet] [--channels 0.25 0.5] [--speedup 2 4] [--calib 256]
                            [--test 300] [--batch 32] [--w8a8] [--lean] [--no-dynamic]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc import runtimes  # noqa: E402
from onnxobc.sessions import session  # noqa: E402


MODELS = {"minilm": "all-MiniLM-L6-v2 (6 layers, hidden 384, FFN 1536)",
          "mpnet": "all-mpnet-base-v2 (12 layers, hidden 768, FFN 3072: BERT-base size)"}


def embeddings(path, feeds: dict, batch: int) -> np.ndarray:
    sess = session(path)
    n = len(feeds["input_ids"])
    return np.concatenate([sess.run(None, {k: v[i:i + batch] for k, v in feeds.items()})[0]
                           for i in range(0, n, batch)]).astype(np.float64)


def neighbours(e: np.ndarray) -> np.ndarray:
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    return s.argmax(1)


def paired_latencies(models: dict, feed: dict) -> dict:
    """Name → (the dense model's seconds per batch, the model's), each model timed in turns with
    the dense model alone in the process, as compress measures its output (beside many other
    sessions, int8 models measured several per cent slower against dense). The dense row has
    the median of its times over the pairs."""
    ort = runtimes.get("onnxruntime")
    pairs = {k: ort.latencies({"dense": models["dense"], "model": p}, feed) for k, p in models.items() if k != "dense"}
    mid = float(np.median([t["dense"] for t in pairs.values()]))
    return {"dense": (mid, mid), **{k: (t["dense"], t["model"]) for k, t in pairs.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", nargs="*", type=float, default=[0.25, 0.5])
    ap.add_argument("--model", choices=list(MODELS), default="minilm",
                    help="tests/minilm.py's all-MiniLM-L6-v2 or tests/mpnet.py's all-mpnet-base-v2 (BERT-base size)")
    ap.add_argument("--speedup", nargs="*", type=float, default=[2.0, 4.0])
    ap.add_argument("--calib", type=int, default=256, help="calibration texts (a quarter held out by compress)")
    ap.add_argument("--test", type=int, default=300, help="held-out texts for the metrics")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--w8a8", action="store_true",
                    help="also static int8 activations: onnxobc --wbits 7 --abits 8 (each --act-ranges) and "
                         "quantize_static (QDQ, per channel, its default ops and MatMul/Gemm alone)")
    ap.add_argument("--lean", action="store_true",
                    help="only each form's default: no --smooth off or --act-ranges ablation runs")
    ap.add_argument("--no-dynamic", action="store_true", help="no onnxobc dynamic int8 run (quantize_dynamic stays)")
    args = ap.parse_args()
    encoder = importlib.import_module(args.model)
    dense = encoder.model_path()
    dynamic = ["--wbits", "8", "--abits", "dynamic"]
    static = ["--wbits", "7", "--abits", "8"]
    ablations = [] if args.lean else [dynamic + ["--smooth", "off"]]
    if args.w8a8 and not args.lean:
        ablations += [static + ["--act-ranges", how] for how in ("output", "histogram")] + [static + ["--smooth", "off"]]
    runs = [["--channels", str(c)] for c in args.channels] + ([] if args.no_dynamic else [dynamic])
    runs += [["--channels", str(c)] + dynamic for c in args.channels[:1]]
    runs += [["--speedup", f"{f:g}x"] for f in args.speedup]
    runs += ([static] if args.w8a8 else []) + ablations
    rows, refused, predicted, chosen = [], [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        np.savez(tmp / "calib.npz", **encoder.feeds(args.calib))
        test = encoder.feeds(args.test, skip=args.calib)
        models, seconds = {"dense": dense}, {"dense": 0.0}
        for i, extra in enumerate(runs):
            name, out = "onnxobc " + " ".join(extra), tmp / f"o{i}.onnx"
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "onnxobc", "compress", str(dense), str(out), "--calib",
                                str(tmp / "calib.npz"), "--batch-size", str(args.batch), *extra, "--report",
                                str(tmp / f"o{i}.json")], capture_output=True, text=True)
            if r.returncode == 2 and "cannot be met" in r.stderr:
                refused.append([name, r.stderr.strip().splitlines()[-1].removeprefix("onnxobc: error: "),
                                f"{time.perf_counter() - t:.0f}"])
                continue
            if r.returncode:
                sys.exit(f"{name} failed: {r.stderr[-1000:]}")
            models[name], seconds[name] = out, time.perf_counter() - t
            report = json.loads((tmp / f"o{i}.json").read_text())
            chosen += [[name, n] for n in report.get("notes", []) if "(sequential auto)" in n]
            budget = report.get("budget", {})
            if "predicted_speedup" in budget:  # the plan's prediction (corrected by the re-plans) and compress's
                predicted[name] = (budget["predicted_speedup"], budget["corrected_speedup"],  # own measurement
                                   budget["measured_speedup"])
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for per_channel in (False, True):
            name = "quantize_dynamic int8" + (", per channel" if per_channel else "")
            t = time.perf_counter()
            quantize_dynamic(str(dense), str(tmp / f"qdyn{per_channel}.onnx"), weight_type=QuantType.QInt8,
                             per_channel=per_channel)
            models[name], seconds[name] = tmp / f"qdyn{per_channel}.onnx", time.perf_counter() - t
        if args.w8a8:
            from pipeline import quantize_static

            calib = dict(np.load(tmp / "calib.npz"))
            for name, ops in (("quantize_static", None), ("quantize_static, MatMul/Gemm", ["MatMul", "Gemm"])):
                t = time.perf_counter()
                out = tmp / f"qs{len(models)}.onnx"
                try:
                    quantize_static(dense, out, calib, reduce_range=False, op_types=ops)
                except Exception as e:  # noqa: BLE001 (a peer's failure is a result: it is reported)
                    refused.append([name, f"failed: {type(e).__name__}: {str(e)[:200]}", f"{time.perf_counter() - t:.0f}"])
                    continue
                models[name], seconds[name] = out, time.perf_counter() - t
        emb = {k: embeddings(p, test, args.batch) for k, p in models.items()}
        ref = neighbours(emb["dense"])
        sec = paired_latencies(models, {k: v[: args.batch] for k, v in test.items()})
        for k, p in models.items():
            cosine = np.mean(np.sum(emb[k] * emb["dense"], 1))
            rows.append([k, f"{cosine:.4f}", f"{np.mean(neighbours(emb[k]) == ref):.3f}",
                         f"{sec[k][1] * 1e3:.1f}", f"{sec[k][0] / sec[k][1]:.2f}x",
                         f"{pathlib.Path(p).stat().st_size / pathlib.Path(dense).stat().st_size:.3f}",
                         f"{seconds[k]:.0f}",
                         "{:.2f}x / {:.2f}x / {:.2f}x".format(*predicted[k]) if k in predicted else "-"])
    note(f"{MODELS[args.model]}, {args.calib} calibration texts (a quarter held "
         f"out by compress), metrics on {args.test} other texts of {encoder.SEQ} tokens (no padding), latency at batch "
         f"{args.batch} on onnxruntime CPU, each model timed in turns with the dense model alone")
    print_table(["model", "embedding cosine with dense", "nearest-neighbour agreement", "ms / batch", "speedup",
                 "file share", "s to make", "predicted / corrected / measured by compress"], rows)
    if refused:
        print_table(["refused", "message", "s to refuse"], refused)
    if chosen:
        print_table(["onnxobc run", "solved on the dense inputs or wave after wave (sequential auto)"], chosen)


if __name__ == "__main__":
    main()
    record()
