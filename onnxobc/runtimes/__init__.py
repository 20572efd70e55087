"""Runtime adapters, one file each, imported lazily by whoever needs that runtime. Each has
`latencies({key: model}, feed)` → {key: median seconds per run} (timed in turns where the
runtime allows) and `available()` → None or why it cannot run here."""

from __future__ import annotations

import importlib

ADAPTERS = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "deepsparse": "deepsparse"}


def load(name: str):
    """The adapter module for runtime `name`; ValueError naming the choices otherwise."""
    if name not in ADAPTERS:
        raise ValueError(f"no runtime adapter {name!r}; choose one of {sorted(ADAPTERS)}")
    return importlib.import_module(f"{__name__}.{ADAPTERS[name]}")
