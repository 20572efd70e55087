"""Greedy selection rules of ExactOBS and OBQ, driving an elimination state (eager or deferred).

Each rule returns, per row, the order in which it fixed columns (original column indices, or
block indices for block pruning) and the loss increment of every step.
"""

from __future__ import annotations

import numpy as np


def prune_all(state, steps: int):
    """Unstructured ExactOBS: prune the weight with the least w_p² / H⁻¹_pp, `steps` times."""
    xp, ar = state.xp, state.ar
    order = xp.empty((state.R, steps), dtype=np.int64)
    inc = xp.empty((state.R, steps), dtype=np.float64)
    zero = xp.zeros(state.R, dtype=state.w.dtype)
    for k in range(steps):
        score = xp.where(state.alive, state.w * state.w / state.safe_diag(), xp.inf)
        p = xp.argmin(score, axis=1)
        order[:, k] = state.idx[ar, p]
        inc[:, k] = state.eliminate(p, zero)
        state.checkpoint()
    return order, inc


def prune_nm(state, n: int, m: int):
    """N:M ExactOBS: as unstructured, but only among groups of m consecutive columns that still
    have fewer than m − n pruned; stops when every group has exactly n left."""
    xp, ar = state.xp, state.ar
    cols = state.out.shape[1]
    steps = cols // m * (m - n)
    pruned = xp.zeros((state.R, cols // m), dtype=np.int32)
    order = xp.empty((state.R, steps), dtype=np.int64)
    inc = xp.empty((state.R, steps), dtype=np.float64)
    zero = xp.zeros(state.R, dtype=state.w.dtype)
    for k in range(steps):
        open_group = pruned[ar[:, None], state.idx // m] < (m - n)
        score = xp.where(state.alive & open_group, state.w * state.w / state.safe_diag(), xp.inf)
        p = xp.argmin(score, axis=1)
        col = state.idx[ar, p]
        order[:, k] = col
        pruned[ar, col // m] += 1
        inc[:, k] = state.eliminate(p, zero)
        state.checkpoint()
    return order, inc


def quad_form_inv(D, v, tiny):
    """vᵀ D⁻¹ v for stacks of small SPD matrices D (..., c, c) and vectors v (..., c), by an
    unrolled Cholesky factorisation (c is small: one vectorised operation per entry)."""
    c = D.shape[-1]
    L = [[None] * c for _ in range(c)]
    y = [None] * c
    total = 0
    for j in range(c):
        s = D[..., j, j] - sum(L[j][k] * L[j][k] for k in range(j))
        L[j][j] = (s * (s > tiny) + tiny * (s <= tiny)) ** 0.5
        for i in range(j + 1, c):
            L[i][j] = (D[..., i, j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
        y[j] = (v[..., j] - sum(L[j][k] * y[k] for k in range(j))) / L[j][j]
        total = total + y[j] * y[j]
    return total


def prune_blocks(state, c: int, steps: int):
    """Block ExactOBS (group OBS, eq. 5 of the paper): prune the block P of c consecutive
    columns with the least w_Pᵀ ((H⁻¹)_PP)⁻¹ w_P; its c columns are then eliminated one after
    the other, which gives exactly the group update."""
    xp, ar = state.xp, state.ar
    order = xp.empty((state.R, steps), dtype=np.int64)
    inc = xp.zeros((state.R, steps), dtype=np.float64)
    zero = xp.zeros(state.R, dtype=state.w.dtype)
    for k in range(steps):
        nblk = state.w.shape[1] // c
        wb = state.w.reshape(state.R, nblk, c)
        score = quad_form_inv(state.diag_blocks(c), wb, state.tiny)
        score = xp.where(state.alive.reshape(state.R, nblk, c)[:, :, 0], score, xp.inf)
        b = xp.argmin(score, axis=1)
        order[:, k] = state.idx[ar, b * c] // c
        for i in range(c):
            inc[:, k] += state.eliminate(b * c + i, zero)
        state.checkpoint()
    return order, inc


def quantize(state, grid, outliers: bool = True):
    """OBQ: fix the weight with the least (q(w_p) − w_p)² / H⁻¹_pp at q(w_p), until every alive
    weight is on the grid. With `outliers`, weights further than half a grid step outside the
    grid are quantized first, as soon as they appear (section 5 of the paper). Rows may have
    different numbers of alive weights (compound with a mask); finished rows stay untouched."""
    xp, ar = state.xp, state.ar
    steps = int(state.alive.sum(axis=1).max())
    order = xp.full((state.R, steps), -1, dtype=np.int64)
    inc = xp.zeros((state.R, steps), dtype=np.float64)
    for k in range(steps):
        q = grid.project(state.w)
        err = q - state.w
        score = xp.where(state.alive, err * err / state.safe_diag(), xp.inf)
        if outliers:
            out = state.alive & grid.outlier(state.w)
            score = xp.where(out.any(axis=1)[:, None] & ~out, xp.inf, score)
        p = xp.argmin(score, axis=1)
        active = state.alive[ar, p]
        order[:, k] = xp.where(active, state.idx[ar, p], -1)
        inc[:, k] = state.eliminate(p, q[ar, p], active)
        state.checkpoint()
    return order, inc
