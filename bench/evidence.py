"""Where a figure comes from: the commit, the machine and the versions a bench ran with, written
into every JSON file a bench saves."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import subprocess
import sys
from importlib import metadata

ROOT = pathlib.Path(__file__).parents[1]
PACKAGES = ("onnxobc", "numpy", "scipy", "numba", "onnx", "onnxruntime", "cupy-cuda12x", "cupy-cuda13x", "ray")


def _git(*args) -> str:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return r.stdout.strip() or "unknown"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def provenance() -> dict:
    """The commit (with '+changes' when the tree differs from it), the machine and the versions."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    dirty = _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")
    return {"commit": _git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]),
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "system": platform.platform(),
                        "python": platform.python_version()},
            "versions": versions}
