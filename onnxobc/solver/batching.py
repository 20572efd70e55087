"""Run a greedy policy over a layer's rows, batch by batch, on the chosen engine and device.

Engines: "fused" (compiled row-major CPU kernels, fused.py), "deferred" (elimination.DeferredState,
NumPy or CuPy), "eager" (elimination.EagerState, the oracle); "auto" is fused on the CPU when
numba is importable, deferred otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fused, policies
from .backend import array_module, free_bytes, to_host, workspace
from .elimination import DeferredState, EagerState, start_rows

ENGINES = ("auto", "fused", "deferred", "eager")
DEFAULT_DTYPE = np.float32
DEFAULT_MEM = 2 << 30  # bytes of per-row inverse Hessians held at once on the CPU
DEVICE_SHARE = 0.5  # of a GPU's free memory, for the per-row inverses (the rest: pending vectors, temporaries)
ROW_ELEMENTS = 1 << 17  # rows × cols per batch that amortise the per-step Python overhead


@dataclass(frozen=True)
class Policy:
    kind: str  # "prune" | "nm" | "blocks" | "quant"
    n: int = 0
    m: int = 0
    block: int = 4
    outliers: bool = True


def row_batches(rows: int, d: int, itemsize: int, mem_bytes: int, step_elements: int | None = ROW_ELEMENTS):
    """Row slices: no more rows than `mem_bytes` of inverses allows, nor (on the CPU) more than it
    takes to keep each step's vector work large, `step_elements`: more would only touch more
    memory. On a device (`step_elements` None) larger batches only mean fewer kernel launches."""
    per_row = max(1, d * d * itemsize)
    cap = rows if step_elements is None else max(8, step_elements // d)
    step = int(max(1, min(rows, mem_bytes // per_row, cap)))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def batch_memory(xp, cols: int, flush_every: int) -> int:
    """Bytes of per-row inverses a batch may hold: DEFAULT_MEM on the CPU; on a device, its share
    of the free memory, less what the pending vectors (flush_every × cols per row) take."""
    free = free_bytes(xp)
    if free is None:
        return DEFAULT_MEM
    return int(DEVICE_SHARE * free * cols / (cols + flush_every))


def _state_policy(policy, state, grid, cols):
    if policy.kind == "prune":
        return policies.prune_all(state, cols)
    if policy.kind == "nm":
        return policies.prune_nm(state, policy.n, policy.m)
    if policy.kind == "blocks":
        return policies.prune_blocks(state, policy.block, cols // policy.block)
    return policies.quantize(state, grid, policy.outliers)


def resolve_engine(engine: str, xp) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "fused" and (xp is not np or not fused.available()):
        raise ValueError("engine 'fused' needs numba and the CPU device")
    if engine == "auto":
        return "fused" if xp is np and fused.available() else "deferred"
    return engine


def run_rows(policy: Policy, W, H, Hinv, *, mask=None, grid=None, engine="auto", device="cpu",
             dtype=DEFAULT_DTYPE, flush_every=128, mem_bytes=None, progress=None):
    """Apply `policy` to every row batch. Returns host arrays (weights, order, inc, loss0):
    per row, the columns (or blocks) in the order they were fixed and each step's loss.
    `mem_bytes`: bytes of per-row inverses held at once (default: batch_memory)."""
    xp = array_module(device)
    engine = resolve_engine(engine, xp)
    rows, cols = W.shape
    # the greedy steps do not change when H becomes cH (H⁻¹ becomes H⁻¹/c, each step's loss 1/c of
    # itself), but float32 over- or underflows for tiny or huge inputs: solve at mean diag H = 1
    scale = float(H.diagonal().mean())
    H, Hinv = H / scale, Hinv * scale
    weights = np.empty((rows, cols), dtype=np.float32)
    orders, incs, loss0 = [], [], np.zeros(rows)
    if mem_bytes is None:
        mem_bytes = batch_memory(xp, cols, flush_every)
    batches = row_batches(rows, cols, np.dtype(dtype).itemsize, mem_bytes, ROW_ELEMENTS if xp is np else None)
    buffer = workspace(xp, (batches[0].stop - batches[0].start) * cols * cols, dtype)
    for sl in batches:
        Hb, w, alive, idx, l0 = start_rows(H, Hinv, W[sl], None if mask is None else mask[sl], xp, dtype, buffer)
        batch_grid = None if grid is None else grid.take(np.arange(rows)[sl], xp)
        if engine == "fused":
            out, order, inc = fused.run(policy, Hb, w, alive, idx, cols, grid=batch_grid, flush_every=flush_every)
        else:
            if engine == "eager":
                state = EagerState(Hb, w, alive, idx, cols)
            else:
                state = DeferredState(Hb, w, alive, idx, cols, flush_every=flush_every)
            order, inc = _state_policy(policy, state, batch_grid, cols)
            out = state.weights()
        weights[sl] = to_host(out)
        orders.append(to_host(order))
        incs.append(to_host(inc))
        loss0[sl] = l0
        if progress is not None:
            progress(sl.stop - sl.start)
    # batches of rows with different numbers of alive weights (a mask) take different step counts:
    # pad as the policies pad finished rows within a batch (order −1, no loss)
    steps = max(o.shape[1] for o in orders)
    orders = [np.pad(o, ((0, 0), (0, steps - o.shape[1])), constant_values=-1) for o in orders]
    incs = [np.pad(i, ((0, 0), (0, steps - i.shape[1]))) for i in incs]
    return weights, np.concatenate(orders), np.concatenate(incs) * scale, loss0 * scale
