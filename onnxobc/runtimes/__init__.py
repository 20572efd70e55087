"""The runtimes a model is compressed for, one adapter file each, registered here by name. Each
adapter's RUNTIME (a runtimes.base.Runtime) says whether it runs here, times models on it, and
carries what the export and the budgets need to know of it: the int8 form it fuses, the opset and
IR versions it reads, its latency level set."""

from __future__ import annotations

import importlib

from ..errors import OptionError

NAMES = ("onnxruntime", "tensorrt", "deepsparse")


def get(name: str):
    """The Runtime registered as `name`; an OptionError naming the choices otherwise."""
    if name not in NAMES:
        raise OptionError(f"{{runtime}} must be one of {NAMES}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").RUNTIME
