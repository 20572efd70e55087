"""Runs inside the isolated DeepSparse environment (runtimes/deepsparse/setup.sh), never in
onnxobc's: compiles every model given, times them in turns (warm-up, then `rounds` rounds of
`repeats` runs each, so drift on a shared machine hits all alike) and prints
{"seconds": [median per run, one per model]} as JSON.

    python worker.py FEED.npz ROUNDS REPEATS WARMUP MODEL.onnx [MODEL.onnx ...]
"""

import json
import os
import sys
import time

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np  # noqa: E402
from deepsparse import compile_model  # noqa: E402


def main():
    feed_path, rounds, repeats, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with np.load(feed_path, allow_pickle=False) as f:
        names = json.loads(str(f["__order__"]))
        inputs = [f[n] for n in names]
    batch = int(inputs[0].shape[0])
    engines = [compile_model(m, batch_size=batch) for m in sys.argv[5:]]
    for e in engines:
        for _ in range(warmup):
            e.run(inputs)
    times = [[] for _ in engines]
    for _ in range(rounds):
        for e, t in zip(engines, times):
            start = time.perf_counter()
            for _ in range(repeats):
                e.run(inputs)
            t.append((time.perf_counter() - start) / repeats)
    print(json.dumps({"seconds": [float(np.median(t)) for t in times]}))


if __name__ == "__main__":
    main()
