"""Where a figure comes from: every bench run saves the tables it printed, with the commit, the
machine, the versions and the command, as bench/results/<bench>[--<args>].json (one file per
command: a rerun replaces it); bench/results.py makes RESULTS.md from those files."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
from importlib import metadata

from tables import NOTES, PRINTED

ROOT = pathlib.Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results"
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
    """The commit (with '+changes' when tracked files differ from it), the machine and the versions."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ":!bench/results", ":!bench/RESULTS.md")
    return {"commit": _git("rev-parse", "--short", "HEAD") + ("+changes" if dirty not in ("", "unknown") else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["python", f"bench/{pathlib.Path(sys.argv[0]).name}"] + sys.argv[1:]),
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "system": platform.platform(),
                        "python": platform.python_version()},
            "versions": versions}


def record(notes=(), key: str | None = None) -> pathlib.Path:
    """Save the tables printed so far with their provenance; returns the file, named after the
    bench and `key` (by default its arguments)."""
    words = "_".join(a.lstrip("-") for a in sys.argv[1:]) if key is None else key
    slug = re.sub(r"[^A-Za-z0-9.=:,+_-]+", "_", words)[:120]
    path = RESULTS / (pathlib.Path(sys.argv[0]).stem + (f"--{slug}" if slug else "") + ".json")
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({**provenance(), "tables": PRINTED, "notes": NOTES + list(notes)}, indent=1) + "\n")
    print(f"\nrecorded in {path.relative_to(ROOT)}", file=sys.stderr)
    return path
