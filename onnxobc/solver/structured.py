"""Structured ExactOBS: whole groups of input columns removed from every row at once — the k_h·k_w
columns of one Conv input channel, one column of an MLP's down projection, the d_head columns of
one attention head — with the optimal update of the rest. All rows share H, so one greedy pass
with block downdates of H⁻¹ orders the groups, and every removal count follows from that order.

For a removed set P (R the rest), the optimum with Ŵ_P = 0 is

    Ŵ_R = W_R + W_P H_PR H_RR⁻¹,    loss = ½ tr(W_P (H⁻¹_PP)⁻¹ W_Pᵀ),

and removing group Q next, from the current W and H⁻¹ (those of the optimum so far), costs

    ½ tr(W_Q (H⁻¹_QQ)⁻¹ W_Qᵀ),   W −= W_Q (H⁻¹_QQ)⁻¹ H⁻¹_Q:,   H⁻¹ −= H⁻¹_:Q (H⁻¹_QQ)⁻¹ H⁻¹_Q:

(the Schur complement: the sequence of block steps reaches the optimum of the whole set)."""

from __future__ import annotations

import numpy as np

from .checks import check_counts, check_groups, check_problem
from .hessian import inverse, row_losses
from .result import Result


def greedy_groups(W, H, groups: np.ndarray, steps: int) -> tuple:
    """(order, increments): the groups in the order the greedy removes them (`steps` of them), and
    each removal's loss increase."""
    return greedy_joint([(W, H, groups)], steps)


def greedy_joint(problems: list, steps: int) -> tuple:
    """The greedy over groups shared by several layers, each (W, H, groups) with the same number of
    groups: group q is removed from every layer at once (a channel that several consumers read),
    at the sum of their losses. Returns (order, increments)."""
    states = [[np.asarray(W, np.float64).copy(), inverse(H), np.asarray(g)] for W, H, g in problems]
    count = len(states[0][2])
    if any(len(g) != count for _, _, g in states):
        raise ValueError("the layers of a joint removal need the same number of groups")
    alive = np.arange(count)
    order, increments = [], []
    for _ in range(steps):
        loss, picks = np.zeros(len(alive)), []
        for W, Hinv, groups in states:
            idx = groups[alive]  # (alive, g)
            blocks = np.linalg.inv(Hinv[idx[:, :, None], idx[:, None, :]])  # (H⁻¹_QQ)⁻¹ per alive group
            Wq = W[:, idx]  # (rows, alive, g)
            loss += 0.5 * np.einsum("rag,agh,rah->a", Wq, blocks, Wq)
            picks.append((idx, blocks))
        a = int(np.argmin(loss))
        for state, (idx, blocks) in zip(states, picks):
            W, Hinv, _ = state
            Q, M = idx[a], blocks[a]
            W -= (W[:, Q] @ M) @ Hinv[Q, :]
            state[1] = Hinv - Hinv[:, Q] @ M @ Hinv[Q, :]
            W[:, Q] = 0.0
        order.append(int(alive[a]))
        increments.append(float(loss[a]))
        alive = np.delete(alive, a)
    return np.array(order, np.int64), np.array(increments)


def without_columns(W, H, removed: np.ndarray) -> np.ndarray:
    """The optimal Ŵ (float64) with the columns `removed` zero in every row: Ŵ_R = W H_{:R} H_RR⁻¹."""
    W = np.asarray(W, np.float64)
    keep = np.setdiff1d(np.arange(W.shape[1]), removed)
    W_hat = np.zeros_like(W)
    if len(keep):
        W_hat[:, keep] = np.linalg.solve(H[np.ix_(keep, keep)], H[keep] @ W.T).T
    return W_hat


def prune_groups(W, H, groups, counts) -> list[Result]:
    """One Result per count of removed groups in `counts`, from one greedy pass: Ŵ with those
    groups' columns zero in every row and the rest updated optimally; `mask` marks the kept
    columns (True) in every row, `order` the groups in the order they are removed.
    `groups`: (G, g) column indices, each row one group."""
    W, H = check_problem(W, H)
    groups = check_groups(groups, W.shape[1])
    counts = check_counts(counts, len(groups))
    order, _ = greedy_groups(W, H, groups, max(counts))
    results = []
    for k in counts:
        removed = groups[order[:k]].ravel()
        W_hat = without_columns(W, H, removed)
        mask = np.ones(W.shape, dtype=bool)
        mask[:, removed] = False
        rl = row_losses(W, W_hat, H)
        results.append(Result(weight=W_hat.astype(np.float32), loss=float(rl.sum()), row_loss=rl, mask=mask,
                              order=order[:k]))
    return results
