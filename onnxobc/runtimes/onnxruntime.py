"""onnxruntime: sessions and latency measurement (CPU; the CUDA provider is used when
onnxruntime-gpu is the installed package and a device is visible)."""

from __future__ import annotations

import time

import numpy as np


def providers() -> list:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def session(model, threads: int | None = None):
    """An InferenceSession for a path or a ModelProto, with all graph optimizations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    src = model if isinstance(model, (str, bytes)) else (str(model) if hasattr(model, "__fspath__")
                                                         else model.SerializeToString())
    return ort.InferenceSession(src, so, providers=providers())


def compare_latency(sessions: dict, feed: dict, rounds: int = 10, repeats: int = 10, warmup: int = 3) -> dict:
    """Median seconds per run of each session, measured side by side: the sessions take turns
    round by round, so machine noise hits all of them alike."""
    times = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, feed)
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(repeats):
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}
