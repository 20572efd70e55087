"""Low-rank layers on the layer objective: the rank-r Ŵ minimising ‖(W − Ŵ)X‖².

With H = 2XXᵀ/N = L Lᵀ (Cholesky), tr((W − Ŵ) H (W − Ŵ)ᵀ) = ‖(W − Ŵ) L‖²_F, so the optimum is
the truncated SVD of W L taken back through L⁻¹ (Eckart–Young in the whitened space):
W L = U S Vᵀ, Ŵ_r = U_r S_r V_rᵀ L⁻¹, and the loss is Σ_{i>r} s_i² / 2. The factors are returned
balanced, A = U_r S_r^½ and B = S_r^½ V_rᵀ L⁻¹, so each can be quantized as a layer of its own.

Quantized factors (`quantized_low_rank`): B is the first layer, reading x, so it is quantized by
OBQ on H. A reads B̂x, whose Hessian is H_A = B̂ H B̂ᵀ; the A minimising ‖(W − A B̂)X‖² is
A* = W H B̂ᵀ H_A⁻¹, and since W − A* B̂ is orthogonal to every A B̂ under H,
‖(W − Â B̂)X‖² = ‖(W − A* B̂)X‖² + ‖(A* − Â) B̂X‖²: quantizing A* by OBQ on H_A is exact for the
remaining term.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

from .checks import check_problem
from .grids import fit_uniform_grid
from .hessian import prepare, row_losses
from .quant import quantize
from .result import Result


def rank_for(rows: int, cols: int, share: float) -> int:
    """The rank whose two factors cost `share` (0 < share < 1) of the dense layer's multiply-adds:
    r (rows + cols) = share · rows · cols, at least 1 (always below min(rows, cols))."""
    if not 0 < share < 1:
        raise ValueError(f"a low-rank share of the multiply-adds must be in (0, 1), got {share}")
    return max(1, int(share * rows * cols / (rows + cols)))


def low_rank(W, H, ranks) -> list[Result]:
    """For each rank r in `ranks` (1 ≤ r ≤ min(rows, cols)), the optimal rank-r Ŵ and its factors.
    H must be positive definite (see hessian.prepare); one SVD serves every rank."""
    W, H = check_problem(W, H)
    rows, cols = W.shape
    ranks = [int(r) for r in ranks]
    if not ranks or any(not 1 <= r <= min(rows, cols) for r in ranks):
        raise ValueError(f"ranks must lie in [1, {min(rows, cols)}] for a {rows}×{cols} layer, got {ranks}")
    try:
        L = np.linalg.cholesky(np.asarray(H, np.float64))
    except np.linalg.LinAlgError:
        raise ValueError("the Hessian is not positive definite; prepare it with onnxobc.solver.prepare") from None
    U, S, Vt = np.linalg.svd(np.asarray(W, np.float64) @ L, full_matrices=False)
    out = []
    for r in ranks:
        root = np.sqrt(S[:r])
        A = U[:, :r] * root
        B = solve_triangular(L, (Vt[:r].T * root), lower=True, trans="T").T  # S^½ Vᵀ L⁻¹
        W_hat = A @ B
        rl = row_losses(W, W_hat, H)
        out.append(Result(weight=W_hat.astype(np.float32), loss=float(rl.sum()), row_loss=rl,
                          factors=(A.astype(np.float32), B.astype(np.float32))))
    return out


def quantized_low_rank(W, H, rank: int, bits: int, symmetric: bool = True, method: str = "exact",
                       damp: float = 0.01) -> Result:
    """The rank-`rank` Ŵ = Â B̂ with both factors on per-row `bits`-bit grids (see the module doc);
    `factor_results` holds the quantization Result of A (on H_A, dampened by `damp`) and of B."""
    W, H = check_problem(W, H)
    A, B = low_rank(W, H, [rank])[0].factors
    rb = quantize(B, H, fit_uniform_grid(B, bits, symmetric), method=method)
    Bq = rb.weight.astype(np.float64)
    # H_A dampened (and any all-zero row of B̂ made a dead input) as every layer problem is
    _, H_A = prepare(np.zeros((1, rank), np.float32), Bq @ H @ Bq.T, damp)
    A_star = np.linalg.solve(H_A, Bq @ H @ np.asarray(W, np.float64).T).T.astype(np.float32)
    ra = quantize(A_star, H_A, fit_uniform_grid(A_star, bits, symmetric), method=method)
    W_hat = ra.weight.astype(np.float64) @ Bq
    rl = row_losses(W, W_hat, H)
    return Result(weight=W_hat.astype(np.float32), loss=float(rl.sum()), row_loss=rl,
                  factors=(ra.weight, rb.weight), factor_results=(ra, rb))

