"""How long the exact solvers take, predicted before they run. One exact pass over a group
(OBQ, ExactOBS) eliminates each row's cols weights one by one against a cols × cols inverse
Hessian. Measured (bench/solver.py, bench/deadline.py), a row's time grows as cols² while that
inverse stays in the caches and as cols³ beyond: rows · (cols² + cols³ / CACHE_COLS) units of
work per pass fit the shapes from 256 to 3072 columns within about 1.5x. The seconds one unit
takes here are measured once per process by a small exact solve."""

from __future__ import annotations

import functools
import time

import numpy as np

from .grids import fit_uniform_grid
from .quant import quantize

PROBE_SHAPE = (64, 512)  # rows, cols of the solve that measures this machine (a few tenths of a second)
CACHE_COLS = 2800.0  # where a row's cols³ term overtakes its cols² term (fitted, see above)


def exact_work(rows: int, cols: int, groups: int = 1, passes: float = 1.0) -> float:
    """Units of work of `passes` exact passes over `groups` rows × cols problems."""
    c = float(cols)
    return passes * groups * rows * (c**2 + c**3 / CACHE_COLS)


@functools.cache
def seconds_per_work(device: str = "cpu") -> float:
    """Seconds one unit of exact work takes on `device` ("cpu", "cuda" or "auto") here: a 4-bit OBQ of a random
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
