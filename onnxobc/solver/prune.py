"""Pruning a layer: unstructured (many levels at once), N:M and c-blocks, by ExactOBS or the
baselines (magnitude, SparseGPT). Every function takes W (rows × cols) and a positive definite H
(see hessian.prepare) and returns Results whose loss is tr((W − Ŵ) H (W − Ŵ)ᵀ)/2."""

from __future__ import annotations

import numpy as np

from .batching import DEFAULT_DTYPE, Policy, run_rows
from .checks import check_block, check_nm, check_problem, check_sparsities
from .fixed_order import fixed_order, sparsegpt_select
from .hessian import inverse, row_losses
from .levels import global_counts, level_weights
from .result import Result

PRUNE_METHODS = ("exact", "magnitude", "sparsegpt")


def sparsity_grid(step: float = 0.1, max_sparsity: float = 0.99) -> list[float]:
    """s_i = 1 − (1 − step)^i while s_i ≤ max_sparsity (the paper's grid: step 0.1, up to 0.99)."""
    out, i = [], 1
    while 1 - (1 - step) ** i <= max_sparsity + 1e-12:
        out.append(1 - (1 - step) ** i)
        i += 1
    return out


def _method(method, allowed=PRUNE_METHODS):
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")


def _result(W, H, W_hat, mask, order=None, row_loss=None):
    rl = row_losses(W, W_hat, H) if row_loss is None else row_loss
    return Result(weight=W_hat.astype(np.float32), loss=float(rl.sum()), row_loss=rl, mask=mask, order=order)


def _levels(W, H, Hinv, order, inc, totals, unit, dtype):
    counts = global_counts(inc, totals)
    weights, losses = level_weights(W, Hinv, order, counts, unit, dtype)
    results = []
    for j in range(len(totals)):
        mask = np.ones(W.shape, dtype=bool)
        for r in range(W.shape[0]):
            n = counts[j, r]
            cols = order[r, :n]
            if unit > 1:
                cols = (cols[:, None] * unit + np.arange(unit)).ravel()
            mask[r, cols] = False
        results.append(Result(weight=weights[j], loss=float(losses[j].sum()), row_loss=losses[j], mask=mask,
                              order=order))
    return results


def prune_unstructured(W, H, sparsities, method: str = "exact", **engine) -> list[Result]:
    """One Result per sparsity. ExactOBS prunes every row completely once, recording the order
    and loss increments, then picks the global mask of each level (Algorithm 2) and rebuilds its
    weights from the order (levels.py). Magnitude and SparseGPT are run once per level."""
    W, H = check_problem(W, H)
    sparsities = check_sparsities(sparsities)
    _method(method)
    rows, cols = W.shape
    totals = [int(round(s * rows * cols)) for s in sparsities]
    if method == "magnitude":
        flat = np.argsort(np.abs(W).ravel(), kind="stable")
        out = []
        for k in totals:
            mask = np.ones(W.size, dtype=bool)
            mask[flat[:k]] = False
            mask = mask.reshape(W.shape)
            out.append(_result(W, H, W * mask, mask))
        return out
    if method == "sparsegpt":
        out = []
        for s in sparsities:
            W_hat, rl = fixed_order(W, H, lambda v, c, p: np.where(p, 0.0, v), select=sparsegpt_select(s))
            out.append(_result(W, H, W_hat, W_hat != 0, row_loss=rl))
        return out
    Hinv = inverse(H)
    _, order, inc, _ = run_rows(Policy("prune"), W, H, Hinv, **engine)
    return _levels(W, H, Hinv, order, inc, totals, 1, engine.get("dtype", DEFAULT_DTYPE))


def prune_nm(W, H, n: int = 2, m: int = 4, method: str = "exact", **engine) -> Result:
    """Exactly n weights kept in every group of m consecutive columns of each row."""
    W, H = check_problem(W, H)
    check_nm(n, m, W.shape[1])
    _method(method)
    rows, cols = W.shape
    if method == "magnitude":
        g = np.abs(W).reshape(rows, cols // m, m)
        idx = np.argsort(g, axis=2, kind="stable")[:, :, : m - n]
        mask = np.ones(g.shape, dtype=bool)
        np.put_along_axis(mask, idx, False, axis=2)
        mask = mask.reshape(W.shape)
        return _result(W, H, W * mask, mask)
    if method == "sparsegpt":
        W_hat, rl = fixed_order(W, H, lambda v, c, p: np.where(p, 0.0, v), select=sparsegpt_select(nm=(n, m)))
        return _result(W, H, W_hat, W_hat != 0, row_loss=rl)
    Hinv = inverse(H)
    W_hat, order, inc, _ = run_rows(Policy("nm", n=n, m=m), W, H, Hinv, **engine)
    mask = np.ones(W.shape, dtype=bool)
    np.put_along_axis(mask, order, False, axis=1)
    W_hat[~mask] = 0
    return Result(weight=W_hat, loss=float(inc.sum()), row_loss=inc.sum(axis=1), mask=mask, order=order)


def prune_blocks(W, H, sparsities, block: int = 4, method: str = "exact", **engine) -> list[Result]:
    """Blocks of `block` consecutive columns pruned together, one Result per block sparsity,
    with the global mask over all rows' blocks (as for unstructured pruning)."""
    W, H = check_problem(W, H)
    sparsities = check_sparsities(sparsities)
    check_block(block, W.shape[1])
    _method(method, ("exact", "magnitude"))
    rows, cols = W.shape
    nblk = cols // block
    totals = [int(round(s * rows * nblk)) for s in sparsities]
    if method == "magnitude":
        norms = np.linalg.norm(W.reshape(rows, nblk, block), axis=2).ravel()
        flat = np.argsort(norms, kind="stable")
        out = []
        for k in totals:
            keep = np.ones(rows * nblk, dtype=bool)
            keep[flat[:k]] = False
            mask = np.repeat(keep.reshape(rows, nblk), block, axis=1)
            out.append(_result(W, H, W * mask, mask))
        return out
    Hinv = inverse(H)
    _, order, inc, _ = run_rows(Policy("blocks", block=block), W, H, Hinv, **engine)
    return _levels(W, H, Hinv, order, inc, totals, block, engine.get("dtype", DEFAULT_DTYPE))

