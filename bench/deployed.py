"""Speedup as a deployment sees it: onnxruntime sessions with their defaults (idle threads
spinning, one thread per core), each model timed alone. onnxobc times models in turns with
spinning off (sessions.py: otherwise one session's spinning threads slow the next); spinning
threads pick up each operator's work sooner, which matters most where a run is many small
operators. Here each model gets a block of runs in a session made for the block and dropped
after it, so no idle session spins beside the one timed, and the blocks alternate so that the
machine's load drifts over all of them alike."""

from __future__ import annotations

import gc
import time

import numpy as np

BLOCKS, RUNS, WARMUP = 6, 30, 5


def default_latencies(models: dict, feed: dict) -> dict:
    """{name: median seconds per run} of each model (path) in a default onnxruntime CPU session."""
    import onnxruntime as ort

    times = {k: [] for k in models}
    for _ in range(BLOCKS):
        for k, path in models.items():
            s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for _ in range(WARMUP):
                s.run(None, feed)
            for _ in range(RUNS):
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
            del s
            gc.collect()
    return {k: float(np.median(v)) for k, v in times.items()}


def default_speedup(dense, out, feed: dict) -> float:
    """The dense model's default-session time over `out`'s."""
    t = default_latencies({"dense": dense, "out": out}, feed)
    return t["dense"] / t["out"]
