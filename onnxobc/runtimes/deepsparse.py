"""DeepSparse on the CPU, driven through a worker process in its own environment
(runtimes/deepsparse/: setup.sh makes it, worker.py runs there), because deepsparse 1.8.0 pins
onnx<1.15 and numpy<2. Where that environment is missing, a clear error says how to make it.

DeepSparse reads ONNX IR ≤ 9 and opsets ≤ 19 (its onnx 1.14): `compatible` lowers the IR version
to 9 where it is higher, or says why it cannot run the model (4-bit storage needs opset 21)."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import tempfile

import numpy as np

HOME = pathlib.Path(__file__).resolve().parents[2] / "runtimes" / "deepsparse"
PYTHON = HOME / ".venv" / "bin" / "python"
MAX_IR, MAX_OPSET = 9, 19


def _env() -> dict:
    return {**os.environ, "NM_DISABLE_ANALYTICS": "1"}


@functools.lru_cache(maxsize=None)
def available() -> str | None:
    """None, or why DeepSparse cannot run here (checked once per process: it starts an interpreter)."""
    if not PYTHON.is_file():
        return f"its isolated environment is not set up: run {HOME / 'setup.sh'} (needs Python 3.11)"
    r = subprocess.run([str(PYTHON), "-c", "import deepsparse"], capture_output=True, text=True, env=_env())
    return None if r.returncode == 0 else f"deepsparse does not import in {HOME / '.venv'}: {r.stderr.strip()[-300:]}"


def compatible(model):
    """`model` (a ModelProto, changed in place and returned) at an IR version DeepSparse reads (at
    most 9, which every opset up to 19 allows); ValueError when it cannot read the opset."""
    default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    version = max((o.version for o in default), default=0)
    if version > MAX_OPSET:
        raise ValueError(f"DeepSparse reads opsets up to {MAX_OPSET}, and this model is at opset {version} "
                         "(4-bit weights are stored at opset 21): use 8-bit weights for --runtime deepsparse")
    model.ir_version = min(model.ir_version, MAX_IR)
    return model


def latencies(models: dict, feed: dict, rounds: int = 10, repeats: int = 10, warmup: int = 5,
              custom_ops=()) -> dict:
    """Median seconds per run of each model, compiled in one worker process and timed in turns."""
    import onnx

    reason = available()
    if reason:
        raise ValueError(f"--runtime deepsparse: {reason}")
    if custom_ops:
        raise ValueError("--runtime deepsparse cannot load onnxruntime custom-op libraries")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, m in enumerate(models.values()):
            if isinstance(m, onnx.ModelProto):  # compatible() changes it: a copy, not the caller's
                model = onnx.ModelProto()
                model.CopyFrom(m)
            else:
                model = onnx.load(str(m))
            paths.append(str(pathlib.Path(tmp) / f"m{i}.onnx"))
            onnx.save(compatible(model), paths[-1])
        feed_path = pathlib.Path(tmp) / "feed.npz"
        np.savez(feed_path, __order__=json.dumps(list(feed)), **feed)
        r = subprocess.run([str(PYTHON), str(HOME / "worker.py"), str(feed_path), str(rounds), str(repeats),
                            str(warmup), *paths], capture_output=True, text=True, env=_env(), timeout=3600)
    if r.returncode:
        raise ValueError(f"DeepSparse could not run the model: {r.stderr.strip()[-500:]}")
    return dict(zip(models, json.loads(r.stdout.strip().splitlines()[-1])["seconds"]))
