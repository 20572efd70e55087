"""Fuzz run: mutated ONNX models and calibration files (tests/mutate.py) through load, discovery,
calibration and Hessian capture. Every case must end accepted or refused with a clear error;
"unclean" counts anything else (each one is a bug, to fix and add to tests/corpus.py). Prints a
table per kind and the unclean cases' messages; exits 1 if there were any.

    python bench/fuzz.py [--cases 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import random
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))

from mutate import mutated_calibration, mutated_model, run_case, valid_calibration, valid_model  # noqa: E402
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402

KINDS = {"model": lambda rng: (mutated_model(rng), valid_calibration()),
         "calibration": lambda rng: (valid_model(), mutated_calibration(rng))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000, help="cases per kind (default 5000)")
    ap.add_argument("--seed", type=int, default=0, help="the first case's seed; case i uses seed + i")
    args = ap.parse_args()
    rows, unclean = [], []
    for kind, make in KINDS.items():
        counts, t0 = collections.Counter(), time.perf_counter()
        for i in range(args.cases):
            seed = args.seed + i
            with tempfile.TemporaryDirectory() as d:
                outcome, detail = run_case(pathlib.Path(d), *make(random.Random(seed)))
            counts[outcome] += 1
            if outcome == "unclean":
                unclean.append((kind, seed, detail))
        rows.append([kind, str(args.cases), str(counts["accepted"]), str(counts["refused"]), str(counts["unclean"]),
                     f"{time.perf_counter() - t0:.1f}"])
    print_table(["mutated", "cases", "accepted", "refused (clear error)", "unclean", "seconds"], rows)
    for kind, seed, detail in unclean:
        print(f"unclean: {kind} seed {seed}: {detail[:300]}")
    return 1 if unclean else 0


if __name__ == "__main__":
    code = main()
    record()
    sys.exit(code)
