"""Runs inside the isolated DeepSparse environment (runtimes/deepsparse/setup.sh), never in
onnxobc's: times one model on DeepSparse and prints {"seconds": median} as JSON.

    python worker.py MODEL.onnx FEED.npz REPEATS WARMUP
"""

import json
import os
import sys
import time

os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")

import numpy as np  # noqa: E402
from deepsparse import compile_model  # noqa: E402


def main():
    model, feed_path, repeats, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with np.load(feed_path, allow_pickle=False) as f:
        names = json.loads(str(f["__order__"]))
        inputs = [f[n] for n in names]
    batch = int(inputs[0].shape[0])
    engine = compile_model(model, batch_size=batch)
    for _ in range(warmup):
        engine.run(inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.run(inputs)
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": float(np.median(times))}))


if __name__ == "__main__":
    main()
