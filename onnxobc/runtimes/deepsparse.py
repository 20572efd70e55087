"""DeepSparse on the CPU (end of life since 2025-06: kept working, nothing new built on it),
driven through a worker process in its own environment (runtimes/deepsparse/: setup.sh makes it,
worker.py runs there), because deepsparse 1.8.0 pins onnx<1.15 and numpy<2. Where that
environment is missing, a clear error says how to make it. It reads ONNX IR ≤ 9 and opsets ≤ 19
(its onnx 1.14) and runs int8 only in operator form (QLinearConv, MatMulInteger) with one weight
scale per layer."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np

from ..errors import OptionError
from ..protos import copy
from .base import Int8Form, Runtime

HOME = pathlib.Path(__file__).resolve().parents[2] / "runtimes" / "deepsparse"
PYTHON = HOME / ".venv" / "bin" / "python"


def _env() -> dict:
    return {**os.environ, "NM_DISABLE_ANALYTICS": "1"}


@functools.lru_cache(maxsize=None)
def _probe() -> tuple:
    """(deepsparse's version or None, why it cannot run here or None), checked once per process:
    it starts an interpreter."""
    if not PYTHON.is_file():
        return None, f"its isolated environment is not set up: run {HOME / 'setup.sh'} (needs Python 3.11)"
    r = subprocess.run([str(PYTHON), "-c", "import deepsparse; print(deepsparse.__version__)"], capture_output=True,
                       text=True, env=_env())
    if r.returncode:
        return None, f"deepsparse does not import in {HOME / '.venv'}: {r.stderr.strip()[-300:]}"
    return r.stdout.strip(), None


class DeepSparse(Runtime):
    name, label = "deepsparse", "DeepSparse"
    int8 = Int8Form(symmetric=False, outputs=True, elementwise=False,
                    int32_bias=True, operator_form=True, per_tensor=True)
    max_opset, max_ir = 19, 9

    def available(self) -> str | None:
        return _probe()[1]

    def version(self) -> str:
        return _probe()[0] or "unavailable"

    def latencies(self, models: dict, feed: dict, custom_ops=(), rounds: int = 10, repeats: int = 10,
                  progress=None, seconds: float | None = None, warmup: int = 5) -> dict:
        """Median seconds per run of each model, compiled in one worker process and timed in turns
        (no `progress`: the worker reports only when done; every run `seconds` asks to spare is made)."""
        import onnx

        reason = self.available()
        if reason:
            raise OptionError(f"{{runtime}} deepsparse: {reason}")
        if custom_ops:
            raise OptionError("{runtime} deepsparse cannot load onnxruntime custom-op libraries")
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, m in enumerate(models.values()):
                if isinstance(m, onnx.ModelProto):  # conform() changes it: a copy, not the caller's
                    model = copy(m)
                else:
                    model = onnx.load(str(m))
                paths.append(str(pathlib.Path(tmp) / f"m{i}.onnx"))
                onnx.save(self.conform(model), paths[-1])
            feed_path = pathlib.Path(tmp) / "feed.npz"
            np.savez(feed_path, __order__=json.dumps(list(feed)), **feed)
            r = subprocess.run([str(PYTHON), str(HOME / "worker.py"), str(feed_path), str(rounds), str(repeats),
                                str(warmup), *paths], capture_output=True, text=True, env=_env(), timeout=3600)
        if r.returncode:
            raise ValueError(f"DeepSparse could not run the model: {r.stderr.strip()[-500:]}")
        return dict(zip(models, json.loads(r.stdout.strip().splitlines()[-1])["seconds"]))

    def latency_levels(self) -> list:
        # 4-blocks from about 70 %, where DeepSparse speeds them up, in float and with int8 (QLinearConv,
        # per-tensor weights), where it gains the most: the 4-block grid's points nearest 0.7, 0.8, 0.9
        # and 0.95 keep the timing short
        blocks = ["b4-0.686", "b4-0.794", "b4-0.902", "b4-0.950"]
        return ["dense", "w8a8"] + [n for b in blocks for n in (b, f"{b}+w8a8")] + ["lr0.500", "lr0.250"]


RUNTIME = DeepSparse()
