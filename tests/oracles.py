"""Slow, obviously correct references: OBS with the inverse recomputed from scratch at every
step, Algorithm 2 with a literal heap, the closed-form optimum for a fixed mask."""

from __future__ import annotations

import heapq

import numpy as np


def make_problem(rows, cols, seed=0, samples=None, ill=False, damp=0.01):
    """W and a prepared H from random correlated inputs (more samples than columns)."""
    from onnxobc.solver import HessianAccumulator, prepare

    rng = np.random.default_rng(seed)
    n = samples or 4 * cols
    mix = rng.standard_normal((cols, cols))
    if ill:
        u, _, vt = np.linalg.svd(mix)
        mix = u @ np.diag(10.0 ** -np.linspace(0, 4, cols)) @ vt
    X = rng.standard_normal((n, cols)) @ mix + 0.1 * rng.standard_normal(cols)
    acc = HessianAccumulator(cols)
    acc.add_batch(X)
    W = (rng.standard_t(4, (rows, cols)) * 0.1).astype(np.float32)
    return prepare(W, acc.hessian, damp=damp)


def obs_row(w, H, pick, target, stop):
    """Generic brute-force OBS on one row: at each step recompute inv(H_MM) for the alive set M,
    let `pick(w_M, Hinv, M, fixed)` choose a position j of M, fix it at target(...) with the
    OBS update. Returns (order, increments, final w)."""
    w = np.array(w, dtype=np.float64)
    M = list(range(len(w)))
    order, inc = [], []
    while len(order) < stop:
        Hi = np.linalg.inv(H[np.ix_(M, M)])
        j = pick(w[M], Hi, M, order)
        p = M[j]
        t = target(w[M], j, p)
        e = w[p] - t
        inc.append(0.5 * e * e / Hi[j, j])
        w[M] -= e / Hi[j, j] * Hi[:, j]
        w[p] = t
        order.append(p)
        M.remove(p)
    return np.array(order), np.array(inc), w


def brute_unstructured(W, H):
    res = [obs_row(w, H, lambda wm, Hi, M, o: int(np.argmin(wm**2 / np.diag(Hi))), lambda wm, j, p: 0.0, len(w))
           for w in W]
    return np.array([r[0] for r in res]), np.array([r[1] for r in res])


def brute_nm(W, H, n, m):
    def pick(wm, Hi, M, order):
        full = {g for g in set(p // m for p in order) if sum(1 for q in order if q // m == g) >= m - n}
        score = np.where([p // m not in full for p in M], wm**2 / np.diag(Hi), np.inf)
        return int(np.argmin(score))

    steps = W.shape[1] // m * (m - n)
    res = [obs_row(w, H, pick, lambda wm, j, p: 0.0, steps) for w in W]
    return np.array([r[0] for r in res]), np.array([r[1] for r in res]), np.array([r[2] for r in res])


def brute_blocks(W, H, c):
    """Group OBS on blocks of c columns; returns per-row block order and increments."""
    orders, incs = [], []
    for w in W.astype(np.float64):
        w = w.copy()
        M = list(range(len(w)))
        order, inc = [], []
        while M:
            Hi = np.linalg.inv(H[np.ix_(M, M)])
            best = None
            for b in sorted(set(p // c for p in M)):
                P = [M.index(b * c + i) for i in range(c)]
                wp = w[[M[i] for i in P]]
                s = wp @ np.linalg.solve(Hi[np.ix_(P, P)], wp) / 2
                if best is None or s < best[0]:
                    best = (s, b, P, wp)
            s, b, P, wp = best
            w[M] -= Hi[:, P] @ np.linalg.solve(Hi[np.ix_(P, P)], wp)
            w[[b * c + i for i in range(c)]] = 0
            order.append(b)
            inc.append(s)
            M = [p for p in M if p // c != b]
        orders.append(order)
        incs.append(inc)
    return np.array(orders), np.array(incs)


def brute_quant(W, H, grid, outliers=True):
    orders, incs, outs = [], [], []
    for r, w in enumerate(W):
        rows = np.array([r])

        def pick(wm, Hi, M, order):
            q = grid.project(wm[None, :].astype(np.float64), rows)[0]
            score = (q - wm) ** 2 / np.diag(Hi)
            if outliers:
                out = grid.outlier(wm[None, :].astype(np.float64), rows)[0]
                if out.any():
                    score = np.where(out, score, np.inf)
            return int(np.argmin(score))

        def target(wm, j, p):
            return float(grid.project(wm[None, j : j + 1].astype(np.float64), rows)[0, 0])

        o, i, wf = obs_row(w, H, pick, target, len(w))
        orders.append(o)
        incs.append(i)
        outs.append(wf)
    return np.array(orders), np.array(incs), np.array(outs)


def heap_global_counts(inc, k):
    """Algorithm 2 of the OBC paper, literally: a min-heap over each row's next increment."""
    rows, steps = inc.shape
    taken = np.zeros(rows, dtype=int)
    heap = [(inc[r, 0], r) for r in range(rows)]
    heapq.heapify(heap)
    for _ in range(k):
        _, r = heapq.heappop(heap)
        taken[r] += 1
        if taken[r] < steps:
            heapq.heappush(heap, (inc[r, taken[r]], r))
    return taken


def masked_optimum(W, H, mask):
    """argmin ‖(W − Ŵ)X‖² subject to Ŵ = 0 off the mask: Ŵ_K = W_K + (H_KK)⁻¹ H_KP W_P."""
    out = np.zeros_like(W, dtype=np.float64)
    for r in range(W.shape[0]):
        K, P = np.nonzero(mask[r])[0], np.nonzero(~mask[r])[0]
        w = W[r].astype(np.float64)
        if len(K):
            out[r, K] = w[K] + np.linalg.solve(H[np.ix_(K, K)], H[np.ix_(K, P)] @ w[P])
    return out


def closed_form_loss(W, H, removed):
    """The least layer loss with the columns `removed` zero in every row, from scratch."""
    W = np.asarray(W, np.float64)
    keep = np.setdiff1d(np.arange(W.shape[1]), removed)
    W_hat = np.zeros_like(W)
    if len(keep):
        W_hat[:, keep] = np.linalg.lstsq(H[np.ix_(keep, keep)], H[keep] @ W.T, rcond=None)[0].T
    D = W - W_hat
    return float(np.einsum("ij,jk,ik->", D, H, D) / 2), W_hat


def greedy_groups_from_scratch(W, H, groups, steps):
    """The structured greedy, each step trying every remaining group by solving the whole problem
    again: the group whose removal (with those removed before) leaves the least loss."""
    removed, order = [], []
    left = list(range(len(groups)))
    for _ in range(steps):
        losses = [closed_form_loss(W, H, np.concatenate([groups[q] for q in removed + [g]]))[0] for g in left]
        g = left[int(np.argmin(losses))]
        order.append(g)
        removed.append(g)
        left.remove(g)
    return np.array(order)
