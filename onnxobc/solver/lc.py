"""The LC toolkit's penalty method on the layer objective, for any compression that has a
Euclidean projection (the C step):

    min_V  tr((W − V) H (W − V)ᵀ)/2 + μ/2 ‖V − Δ‖²   (L step: V = (W H + μ Δ)(H + μ I)⁻¹)
    Δ = Π(V)                                         (C step: the nearest compressed matrix)

with μ growing geometrically, so V is pulled from W towards the compressible set. The loss of
each Δ is measured on the true objective and the best one is returned; the first Δ is Π(W), the
plain projection (magnitude pruning, round-to-nearest, truncated SVD), so the result is never
worse than that. OBS solves the same problems exactly or greedily; bench/lc_solvers.py
compares them."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .checks import check_problem
from .grids import fit_uniform_grid
from .hessian import row_losses
from .result import Result


def lc_penalty(W, H, project: Callable, steps: int = 100, mu0: float = 1e-4, growth: float = 1.15) -> Result:
    """The best Δ = project(V) over the penalty path; `mu0` is relative to mean(diag H)."""
    W, H = check_problem(W, H)
    if steps < 1 or mu0 <= 0 or growth <= 1:
        raise ValueError("lc_penalty needs steps ≥ 1, mu0 > 0 and growth > 1")
    W64, H64 = W.astype(np.float64), np.asarray(H, np.float64)
    WH = W64 @ H64
    scale = float(np.mean(np.diag(H64)))
    delta = np.asarray(project(W64), np.float64)
    rl = row_losses(W, delta, H64)
    best = (float(rl.sum()), delta, rl)
    mu = mu0 * scale
    eye = np.eye(H64.shape[0])
    for _ in range(steps):
        V = cho_solve(cho_factor(H64 + mu * eye), (WH + mu * delta).T).T  # (H + μI) symmetric
        delta = np.asarray(project(V), np.float64)
        rl = row_losses(W, delta, H64)
        if rl.sum() < best[0]:
            best = (float(rl.sum()), delta, rl)
        mu *= growth
    return Result(weight=best[1].astype(np.float32), loss=best[0], row_loss=best[2])


def project_sparse(sparsity: float) -> Callable:
    """Keep the largest-magnitude (1 − sparsity) share of the layer's weights."""
    def project(V):
        k = int(round(sparsity * V.size))
        out = V.copy()
        if k:
            out.ravel()[np.argsort(np.abs(V).ravel(), kind="stable")[:k]] = 0
        return out
    return project


def project_uniform(bits: int, symmetric: bool = True) -> Callable:
    """Round to a b-bit per-row grid refitted to V."""
    return lambda V: fit_uniform_grid(V, bits, symmetric).project(V)


def project_rank(rank: int) -> Callable:
    """The truncated SVD."""
    def project(V):
        U, S, Vt = np.linalg.svd(V, full_matrices=False)
        return (U[:, :rank] * S[:rank]) @ Vt[:rank]
    return project
