"""The memory a layer's capture and solve take, against the budget (--max-memory): layers over it
are left dense with the reason, and all the Hessians held at once must fit too."""

from __future__ import annotations

from .errors import OptionError
from .graph.layers import Skipped


def memory_budget(max_memory: float | None) -> int | None:
    """Bytes a layer's solve may take: `max_memory` GiB (--max-memory), else the memory available
    now (Linux), else no limit."""
    if max_memory is not None:
        return int(max_memory * 2**30)
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def hessian_bytes(layer) -> int:
    """Its float64 Hessians, one cols × cols matrix per group."""
    return 8 * layer.cols**2 * layer.groups


def layer_memory(layer) -> int:
    """Bytes to capture and solve `layer`: its Hessians, and about three more cols × cols
    matrices while one group is solved (the dampened copy, its inverse, a row's inverse)."""
    return hessian_bytes(layer) + 8 * layer.cols**2 * 3


def within_memory(layers: list, budget: int | None) -> tuple:
    """(layers that fit `budget`, Skipped for the others with the reason); a ValueError when the
    Hessians of those that fit do not fit together (they are all held after the capture)."""
    if budget is None:
        return layers, []
    fit = [l for l in layers if layer_memory(l) <= budget]
    over = [Skipped(l.weight, l.op, f"needs {layer_memory(l) / 2**30:.2f} GiB to solve (a {l.cols}×{l.cols} "
                                    f"Hessian), more than the memory budget of {budget / 2**30:.2f} GiB "
                                    "(--max-memory): left dense") for l in layers if l not in fit]
    held = sum(hessian_bytes(l) for l in fit)
    if fit and held + max(layer_memory(l) for l in fit) > budget:
        largest = sorted(fit, key=hessian_bytes, reverse=True)[:3]
        raise OptionError(f"the layers' Hessians take {held / 2**30:.2f} GiB together, more than the memory budget of "
                          f"{budget / 2**30:.2f} GiB: raise {{max_memory}} or {{skip}} the largest "
                          f"({', '.join(l.weight for l in largest)})")
    return fit, over
