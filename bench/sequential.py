"""Sequential mode (--sequential, the OBC paper's A.8) against independent solves, and both
against the baselines GPTQ and round-to-nearest (--method gptq, rtn), at the same weight bits,
on the shipped digits model (top-1 on its 360 test digits), PP-OCRv4 rec (decoded text equal
to the dense model's on held-out rendered lines) and all-MiniLM-L6-v2 (embedding cosine and
nearest-neighbour agreement with the dense model on held-out texts). Each run is
`onnxobc compress` as a user types it, in its own process (--max-time none: every layer exact),
with its wall time and peak memory (max RSS).

    python bench/sequential.py [--models digits rec minilm] [--bits 4 3] [--modes independent sequential gptq rtn]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from encoder import embeddings, neighbours  # noqa: E402
from evidence import record  # noqa: E402
from pipeline import ctc_text  # noqa: E402
from tables import note, print_table  # noqa: E402

from onnxobc.sessions import session  # noqa: E402

MODES = {"independent": ["--sequential", "off"], "sequential": ["--sequential", "on"], "gptq": ["--method", "gptq"],
         "rtn": ["--method", "rtn"]}
DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
RUN = ("import resource, runpy, sys\nsys.argv = ['onnxobc'] + sys.argv[1:]\ntry:\n"
       "    runpy.run_module('onnxobc', run_name='__main__')\nfinally:\n"
       "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def compress(model, out, calib, extra: list, batch: int) -> tuple:
    """(report, seconds, peak MiB) of one `onnxobc compress` in its own process."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RUN, "compress", str(model), str(out), "--calib", str(calib),
                        "--batch-size", str(batch), "--max-time", "none", "--report", f"{out}.json", *extra],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{model} {extra} failed: {r.stderr[-1500:]}")
    peak = int(next(line.split()[1] for line in r.stderr.splitlines() if line.startswith("MAXRSS"))) / 1024
    return json.loads(pathlib.Path(f"{out}.json").read_text()), time.perf_counter() - t, peak


def task(name: str, path, data) -> object:
    if name == "digits":
        return session(path).run(None, {"x": data["x"]})[0].argmax(1)
    if name == "rec":
        return ctc_text(session(path).run(None, {"x": data["x"]})[0])
    return embeddings(path, data, 32)


def agreement(name: str, dense, got, labels=None) -> str:
    if name == "digits":
        return f"top-1 {np.mean(got == labels):.4f} (dense {np.mean(dense == labels):.4f})"
    if name == "rec":
        return f"{np.mean([a == b for a, b in zip(dense, got)]):.3f} text equal"
    return (f"cosine {np.mean(np.sum(got * dense, 1)):.4f}, NN {np.mean(neighbours(got) == neighbours(dense)):.3f}")


def setup(name: str, tmp: pathlib.Path) -> tuple:
    """(model, calibration file, held-out data, labels, batch size)."""
    if name == "digits":
        test = np.load(DIGITS / "test.npz")
        return DIGITS / "mlp.onnx", DIGITS / "calib.npz", {"x": test["x"]}, test["label"], 8
    if name == "rec":
        import ppocr

        x = ppocr.rec_inputs(96)
        np.savez(tmp / "rec.npz", x=x[:64])
        return ppocr.fetch()["rec"], tmp / "rec.npz", {"x": x[64:]}, None, 8
    import minilm

    np.savez(tmp / "minilm.npz", **minilm.feeds(256))
    return minilm.model_path(), tmp / "minilm.npz", minilm.feeds(300, skip=256), None, 32


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["digits", "rec", "minilm"], choices=["digits", "rec", "minilm"])
    ap.add_argument("--bits", nargs="*", type=int, default=[4, 3])
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in args.models:
            model, calib, held, labels, batch = setup(name, tmp)
            dense = task(name, model, held)
            for bits in args.bits:
                for mode in args.modes:
                    extra = MODES[mode]
                    out = tmp / f"{name}-{bits}-{mode}.onnx"
                    rep, seconds, peak = compress(model, out, calib, ["--wbits", str(bits), *extra], batch)
                    (err,) = rep["verification"]["relative_output_error"].values()
                    rows.append([name, f"w{bits}", mode, f"{err:.4f}", agreement(name, dense, task(name, out, held),
                                                                                  labels),
                                 f"{seconds:.0f}", f"{peak:.0f}"])
                    print_table(["model", "bits", "mode", "rel. output error (calibration hold-out)",
                                 "task agreement (held-out inputs)", "s", "peak MiB"], rows, "so far")
    note("independent and sequential: every layer solved exactly (--max-time none), weights per output channel, "
         "symmetric; the output error is compress's verification on the quarter of the calibration samples it holds out; the task figures are on "
         "inputs never used for calibration: the 360 test digits, 32 rendered text lines, 300 texts")
    print_table(["model", "bits", "mode", "rel. output error (calibration hold-out)", "task agreement (held-out inputs)",
                 "s", "peak MiB"], rows)


if __name__ == "__main__":
    main()
    record()
