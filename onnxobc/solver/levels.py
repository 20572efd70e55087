"""Many sparsity levels from one greedy pass: the global mask (Algorithm 2 of the OBC paper) and
each level's weights from the recorded per-row order.

Eliminating columns of a row in a known order is a Cholesky factorisation: with the inverse
Hessian permuted into that order, P H⁻¹ Pᵀ = L Lᵀ, the weights after the first n eliminations
are w⁽ⁿ⁾ = w − L[:, :n] c[:n] with c = L⁻¹ w, and their loss is Σ_{i<n} c_i² / 2. So every level
of a row costs one Cholesky factorisation and one triangular solve, and no per-step trace is kept.
"""

from __future__ import annotations

import numpy as np

STEP = 64

def global_counts(inc: np.ndarray, ks) -> np.ndarray:
    """For each total k in `ks`, how many units each row prunes under the global OBS mask.

    Algorithm 2 merges the rows' increment sequences by always taking the smallest next
    increment; that takes units in increasing order of their running maximum along the row,
    which a stable sort of the running maxima reproduces in one go."""
    rows, steps = inc.shape
    key = np.maximum.accumulate(inc, axis=1).ravel()
    taken_row = np.argsort(key, kind="stable") // steps
    out = np.empty((len(ks), rows), dtype=np.int64)
    for j, k in enumerate(ks):
        if not 0 <= k <= inc.size:
            raise ValueError(f"cannot prune {k} of {inc.size} units")
        out[j] = np.bincount(taken_row[:k], minlength=rows)
    return out


def _factor(A):
    """Lower Cholesky factor of A via LAPACK; None if A is not numerically positive definite."""
    from scipy.linalg import lapack

    potrf = lapack.spotrf if A.dtype == np.float32 else lapack.dpotrf
    L, info = potrf(A, lower=1, clean=1, overwrite_a=1)
    return L if info == 0 else None


def level_weights(W, Hinv, order, counts, unit: int = 1, dtype=np.float32):
    """Weights and per-row losses of every level: `order` (rows, d/unit) lists each row's units
    (columns, or blocks of `unit` columns) in elimination order, `counts` (levels, rows) how many
    units each row prunes at each level. Works in `dtype`, a row in float64 where that fails.
    Returns (weights (levels, rows, d), losses (levels, rows))."""
    from scipy.linalg import solve_triangular

    levels, rows = counts.shape
    d = W.shape[1]
    cols = (order[:, :, None] * unit + np.arange(unit)).reshape(rows, d) if unit > 1 else order
    out = np.empty((levels, rows, d), dtype=np.float32)
    losses = np.empty((levels, rows))
    Hinv_t = np.asarray(Hinv, dtype=dtype)
    for r in range(rows):
        perm = cols[r]
        L = _factor(np.take(np.take(Hinv_t, perm, axis=0), perm, axis=1))
        if L is None:
            L = _factor(np.take(np.take(np.asarray(Hinv, dtype=np.float64), perm, axis=0), perm, axis=1))
        if L is None:
            raise ValueError("the inverse Hessian is not positive definite; dampen H more")
        w = np.asarray(W[r, perm], dtype=L.dtype)
        c = solve_triangular(L, w, lower=True, check_finite=False)
        csum = np.cumsum(c.astype(np.float64) ** 2) / 2
        # w⁽ⁿ⁾ = prefix at the last multiple of STEP below n, minus the rest: the prefix advances in
        # fixed blocks, so a level's weights do not depend on which other levels are asked for
        prefix, done = w.copy(), 0
        for j in np.argsort(counts[:, r], kind="stable"):
            n = int(counts[j, r]) * unit
            base = n // STEP * STEP
            for i in range(done, base, STEP):
                prefix -= L[:, i:i + STEP] @ c[i:i + STEP]
            done = max(done, base)
            wr = prefix - L[:, base:n] @ c[base:n] if n > base else prefix.copy()
            wr[:n] = 0
            out[j, r, perm] = wr
            losses[j, r] = csum[n - 1] if n else 0.0
    return out, losses
