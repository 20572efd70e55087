"""Input validation shared by every solver: each problem is a ValueError that names it."""

from __future__ import annotations

import numpy as np


def check_weight(W) -> np.ndarray:
    W = np.asarray(W)
    if W.ndim != 2 or min(W.shape) < 1:
        raise ValueError(f"W must be a non-empty 2-D matrix (rows × cols), got shape {W.shape}")
    if not np.issubdtype(W.dtype, np.floating):
        raise ValueError(f"W must be floating point, got {W.dtype}")
    if not np.isfinite(W).all():
        raise ValueError("W contains NaN or Inf")
    return W.astype(np.float32, copy=False)


def check_hessian(H, cols: int) -> np.ndarray:
    H = np.asarray(H)
    if H.shape != (cols, cols):
        raise ValueError(f"H must be ({cols}, {cols}) to match W's {cols} columns, got {H.shape}")
    if not np.isfinite(H).all():
        raise ValueError("H contains NaN or Inf")
    scale = np.abs(H).max()
    if scale > 0 and np.abs(H - H.T).max() > 1e-6 * scale:
        raise ValueError("H is not symmetric")
    return H


def check_problem(W, H):
    W = check_weight(W)
    return W, check_hessian(H, W.shape[1]).astype(np.float64, copy=False)


def check_sparsities(sparsities, name: str = "sparsity") -> list[float]:
    s = [float(x) for x in np.atleast_1d(sparsities)]
    if not s:
        raise ValueError(f"at least one {name} is needed")
    for x in s:
        if not 0.0 <= x < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {x}")
    return s


def check_nm(n: int, m: int, cols: int) -> None:
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer))):
        raise ValueError(f"N:M needs integers, got {n!r}:{m!r}")
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    if cols % m:
        raise ValueError(f"N:M {n}:{m} needs cols divisible by {m}, got cols = {cols}")


def check_block(c: int, cols: int) -> None:
    if c < 1 or cols % c:
        raise ValueError(f"block pruning with blocks of {c} needs cols divisible by {c}, got {cols}")


def check_groups(groups, cols: int) -> np.ndarray:
    """(G, g) column indices, each row one group: equal sizes, within [0, cols), no column twice."""
    g = np.asarray(groups)
    if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1 or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups must be a (groups, columns per group) integer array, got shape {g.shape}")
    if g.min() < 0 or g.max() >= cols:
        raise ValueError(f"groups name columns outside [0, {cols})")
    if len(np.unique(g)) != g.size:
        raise ValueError("a column is in more than one group")
    return g.astype(np.int64)


def check_counts(counts, groups: int) -> list[int]:
    c = [int(x) for x in np.atleast_1d(counts)]
    if not c:
        raise ValueError("at least one count of removed groups is needed")
    for x in c:
        if not 0 <= x <= groups:
            raise ValueError(f"counts of removed groups must be in [0, {groups}], got {x}")
    return c
