"""How long the exact solvers take, predicted before they run. One exact pass over a group
(OBQ, ExactOBS) eliminates each row's cols weights one by one, each step downdating that row's
cols × cols inverse Hessian: rows · cols³ work. The seconds one unit of it takes here are
measured once per process by a small exact solve, so a prediction is work × that rate."""

from __future__ import annotations

import functools
import time

import numpy as np

from .grids import fit_uniform_grid
from .quant import quantize

PROBE_SHAPE = (32, 256)  # rows, cols of the solve that measures this machine (a tenth of a second or so)


def exact_work(rows: int, cols: int, groups: int = 1, passes: float = 1.0) -> float:
    """Units of work of `passes` exact passes over `groups` rows × cols problems."""
    return passes * groups * rows * float(cols) ** 3


@functools.lru_cache(maxsize=None)
def seconds_per_work(device: str = "cpu") -> float:
    """Seconds one unit of exact work takes on `device` here: a 4-bit OBQ of a random
    PROBE_SHAPE problem, run once to warm up (kernels loaded or compiled), then timed."""
    rows, cols = PROBE_SHAPE
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4 * cols, cols))
    H = 2 * X.T @ X / len(X) + 0.01 * np.eye(cols)
    W = rng.standard_normal((rows, cols))
    grid = fit_uniform_grid(W, 4, True)
    quantize(W[:2], H, fit_uniform_grid(W[:2], 4, True), device=device)
    t = time.perf_counter()
    quantize(W, H, grid, device=device)
    return (time.perf_counter() - t) / exact_work(rows, cols)
