"""onnxruntime as a target: its int8 form (U8S8 QDQ that it fuses into QLinearConv, QGemm and
MatMulIntegerToFloat, element-wise ops included), MatMulNBits for weight-only MatMuls, and latency
measured side by side. Its sessions come from sessions.py, as the calibration engine's do."""

from __future__ import annotations

import time

import numpy as np

from ..sessions import session
from .base import Int8Form, Runtime, cpu_has_vnni


def compare_latency(sessions: dict, feed: dict, rounds: int = 10, repeats: int = 10, warmup: int = 3,
                    progress=None, seconds: float | None = None) -> dict:
    """Median seconds per run of each session, measured side by side: the sessions take turns
    round by round, so machine noise hits all of them alike (make them with spinning=False).
    With `seconds`, a model whose runs are long gets fewer than `warmup` and `repeats` a round:
    about half that time warming up and that time timed (at least one run each, and a round).
    `progress(done, rounds)` after each round."""
    times, turns = {k: [] for k in sessions}, {}
    for k, s in sessions.items():
        spent, runs = 0.0, 0
        while runs < max(warmup, 1) and (runs == 0 or seconds is None or spent < seconds / 2):
            t = time.perf_counter()
            s.run(None, feed)
            spent, runs = spent + time.perf_counter() - t, runs + 1
        turns[k] = repeats if seconds is None else max(1, min(repeats, int(seconds * runs / (rounds * spent))))
    for r in range(rounds):
        for k, s in sessions.items():
            for _ in range(turns[k]):
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
        if progress is not None:
            progress(r + 1, rounds)
    return {k: float(np.median(v)) for k, v in times.items()}


class OnnxRuntime(Runtime):
    name = label = "onnxruntime"
    int8 = Int8Form(symmetric=False, outputs=True, elementwise=True,
                    int32_bias=True, operator_form=False, per_tensor=False)
    matmulnbits = True
    dynamic_int8 = True

    def available(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed"
        return None

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def latencies(self, models: dict, feed: dict, custom_ops=(), rounds: int = 10, repeats: int = 10,
                  progress=None, seconds: float | None = None) -> dict:
        return compare_latency({k: session(m, custom_ops=custom_ops, spinning=False) for k, m in models.items()}, feed,
                               rounds=rounds, repeats=repeats, progress=progress, seconds=seconds)

    def latency_levels(self) -> list:
        # static int8 for Convs and Gemms, dynamic int8 for MatMuls (transformers)
        w = f"w{self.int8_weight_bits()}"
        return ["dense", f"{w}a8", f"{w}a8dyn", "w4", "lr0.500", "lr0.250"]

    def int8_weight_bits(self) -> int:
        # where the CPU lacks VNNI its U8S8 kernels add pairs of products in 16 bits, which 8-bit weights overflow
        return 8 if cpu_has_vnni() else 7


RUNTIME = OnnxRuntime()
