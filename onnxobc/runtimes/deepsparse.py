"""DeepSparse on the CPU, driven through a worker process in its own environment
(runtimes/deepsparse/: setup.sh makes it, worker.py runs there), because deepsparse 1.8.0 pins
onnx<1.15 and numpy<2. Where that environment is missing, a clear error says how to make it."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np

HOME = pathlib.Path(__file__).resolve().parents[2] / "runtimes" / "deepsparse"
PYTHON = HOME / ".venv" / "bin" / "python"


def available() -> str | None:
    if not PYTHON.is_file():
        return f"its isolated environment is not set up: run {HOME / 'setup.sh'} (needs Python 3.11)"
    r = subprocess.run([str(PYTHON), "-c", "import deepsparse"], capture_output=True, text=True,
                       env={**os.environ, "NM_DISABLE_ANALYTICS": "1"})
    return None if r.returncode == 0 else f"deepsparse does not import in {HOME / '.venv'}: {r.stderr.strip()[-300:]}"


def latency(model, feed: dict, repeats: int = 30, warmup: int = 5, custom_ops=()) -> float:
    import onnx

    reason = available()
    if reason:
        raise ValueError(f"--runtime deepsparse: {reason}")
    if custom_ops:
        raise ValueError("--runtime deepsparse cannot load onnxruntime custom-op libraries")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "m.onnx"
        onnx.save(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)), path)
        np.savez(pathlib.Path(tmp) / "feed.npz", __order__=json.dumps(list(feed)), **feed)
        r = subprocess.run([str(PYTHON), str(HOME / "worker.py"), str(path), str(pathlib.Path(tmp) / "feed.npz"),
                            str(repeats), str(warmup)], capture_output=True, text=True,
                           env={**os.environ, "NM_DISABLE_ANALYTICS": "1"}, timeout=3600)
    if r.returncode:
        raise ValueError(f"DeepSparse could not run the model: {r.stderr.strip()[-500:]}")
    return float(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])


def latencies(models: dict, feed: dict, custom_ops=()) -> dict:
    """Median seconds per run of each model, one after the other."""
    return {k: latency(m, feed, custom_ops=custom_ops) for k, m in models.items()}
