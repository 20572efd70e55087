"""The README's first command as a new user meets it: `onnxobc compress` on the shipped digits model
to 2:4, wall time of the whole process, with an empty numba cache (the first run after install:
the solver kernels compile and are cached on disk) and then again with that cache (every run
after). Repeated --runs times, each in a fresh cache folder.

    python bench/first_run.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from evidence import record  # noqa: E402
from tables import note, print_table  # noqa: E402

ROOT = pathlib.Path(__file__).parents[1]
COMMAND = ["compress", "models/digits/mlp.onnx", "{out}", "--calib", "models/digits/calib.npz", "--nm", "2:4"]


def timed(env: dict, out: pathlib.Path) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "onnxobc", *[a.format(out=out) for a in COMMAND]], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr[-1000:])
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = pathlib.Path(cache) / "digits.obc.onnx"
            first, second = timed(env, out), timed(env, out)
            rows.append([str(i + 1), f"{first:.2f}", f"{second:.2f}"])
    note("`onnxobc compress models/digits/mlp.onnx digits.obc.onnx --calib models/digits/calib.npz --nm 2:4`, "
         "wall time of the process (Python start-up and imports included)")
    print_table(["run", "first (empty numba cache) s", "second (cached kernels) s"], rows)


if __name__ == "__main__":
    main()
    record()
