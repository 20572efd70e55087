"""Run a greedy policy over a layer's rows, batch by batch, on the chosen state and device."""

from __future__ import annotations

import numpy as np

from .backend import array_module, to_host, workspace
from .elimination import DeferredState, EagerState, start_rows

ENGINES = ("deferred", "eager")
DEFAULT_MEM = 2 << 30  # bytes of per-row inverse Hessians held at once


ROW_ELEMENTS = 1 << 17  # rows × cols per batch that amortise the per-step Python overhead


def row_batches(rows: int, d: int, itemsize: int, mem_bytes: int):
    """Row slices: no more rows than `mem_bytes` of inverses allows, nor more than it takes to
    keep each step's vector work large (more would only touch more memory)."""
    per_row = max(1, d * d * itemsize)
    step = int(max(1, min(rows, mem_bytes // per_row, max(8, ROW_ELEMENTS // d))))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def run_rows(policy, W, H, Hinv, *, mask=None, grid=None, engine="deferred", device="cpu",
             dtype=np.float32, flush_every=128, mem_bytes=DEFAULT_MEM, progress=None):
    """Apply `policy(state, grid_batch)` to every row batch. Returns host arrays
    (weights, order, inc, loss0) with order/inc as the policy returned them, stacked by row."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    xp = array_module(device)
    rows, cols = W.shape
    weights = np.empty((rows, cols), dtype=np.float32)
    orders, incs, loss0 = [], [], np.zeros(rows)
    batches = row_batches(rows, cols, np.dtype(dtype).itemsize, mem_bytes)
    buffer = workspace(xp, (batches[0].stop - batches[0].start) * cols * cols, dtype)
    for sl in batches:
        Hb, w, alive, idx, l0 = start_rows(H, Hinv, W[sl], None if mask is None else mask[sl], xp, dtype, buffer)
        if engine == "eager":
            state = EagerState(Hb, w, alive, idx, cols)
        else:
            state = DeferredState(Hb, w, alive, idx, cols, flush_every=flush_every)
        order, inc = policy(state, None if grid is None else grid.take(np.arange(rows)[sl], xp))
        weights[sl] = to_host(state.weights())
        orders.append(to_host(order))
        incs.append(to_host(inc))
        loss0[sl] = l0
        if progress is not None:
            progress(sl.stop - sl.start)
    return weights, np.concatenate(orders), np.concatenate(incs), loss0
