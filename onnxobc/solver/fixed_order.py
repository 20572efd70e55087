"""Fixed-order OBS: GPTQ (quantization) and SparseGPT (pruning), the fast approximate baselines.

Columns are fixed one after the other in a fixed order; with H⁻¹ = UᵀU (U upper triangular) the
OBS update of fixing column i is w[i:] −= (w_i − t)/U_ii · U[i, i:], and updates are applied to
later columns lazily, block by block, as one GEMM.
"""

from __future__ import annotations

import numpy as np

from .hessian import inverse


def _upper_factor(H):
    try:
        return np.linalg.cholesky(inverse(H)).T  # U with H⁻¹ = UᵀU
    except np.linalg.LinAlgError:
        raise ValueError("the inverse Hessian is not positive definite; dampen H more") from None


def fixed_order(W, H, target, order=None, block: int = 128, select=None):
    """Fix every column in `order` (default: natural order), each at target(values, cols, pruned)
    where `values` is the current (rows, 1) column `cols`. `select(W1, d1, i, pruned)`, called
    before each column i of a lazy block, may fill the block's bool prune mask (SparseGPT); it
    reaches `target` as `pruned` (None without `select`). Returns (Ŵ float64, row losses)."""
    rows, d = W.shape
    perm = np.arange(d) if order is None else np.asarray(order)
    W = np.asarray(W, dtype=np.float64)[:, perm].copy()
    U = _upper_factor(np.asarray(H, dtype=np.float64)[np.ix_(perm, perm)])
    losses = np.zeros(rows)
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        W1 = W[:, i1:i2]
        U1 = U[i1:i2, i1:i2]
        E1 = np.zeros_like(W1)
        pruned = np.zeros(W1.shape, dtype=bool) if select is not None else None
        for i in range(i2 - i1):
            if select is not None:
                select(W1, np.diag(U1), i, pruned)
            w = W1[:, i]
            t = target(w[:, None], perm[i1 + i : i1 + i + 1], None if pruned is None else pruned[:, i : i + 1])[:, 0]
            e = (w - t) / U1[i, i]
            W1[:, i:] -= e[:, None] * U1[i, i:][None, :]
            W1[:, i] = t
            E1[:, i] = e
            losses += e * e / 2
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    out = np.empty_like(W)
    out[:, perm] = W
    return out, losses


def act_order(H) -> np.ndarray:
    """GPTQ's activation order: columns by decreasing H_ii."""
    return np.argsort(-np.diag(H), kind="stable")


def sparsegpt_select(sparsity=None, nm=None):
    """SparseGPT's mask choice: the weights with the least w² / U_ii², either the smallest
    `sparsity` fraction of each lazy block (chosen at its start) or m − n of every m consecutive
    columns (chosen when the group is reached, with the weights updated so far)."""

    def select(W1, d1, i, pruned):
        if nm is not None:
            n, m = nm
            if i % m == 0:
                score = W1[:, i : i + m] ** 2 / d1[None, i : i + m] ** 2
                idx = np.argsort(score, axis=1, kind="stable")[:, : m - n]
                np.put_along_axis(pruned[:, i : i + m], idx, True, axis=1)
        elif i == 0:
            score = W1**2 / d1[None, :] ** 2
            k = int(round(sparsity * score.size))
            if k:
                pruned.ravel()[np.argpartition(score.ravel(), k - 1)[:k]] = True

    return select
