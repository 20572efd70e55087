"""Additive combinations Ŵ = Δ₁ + Δ₂ (+ Δ₃): quantized + sparse, quantized + low-rank, sparse +
low-rank, or all three, fitted by alternating minimisation of the layer objective.

With every part but one fixed, ‖(W − Σ Δ)X‖² = ‖((W − Σ_{j≠i} Δ_j) − Δ_i)X‖² is the ordinary
layer problem for part i with target W − Σ_{j≠i} Δ_j on the same H, so each step is that part's
own solver (OBQ, ExactOBS, the closed-form low-rank). Parts start at zero and are solved in the
order given, each first by its `start` solver: a sparse part first takes the largest-magnitude
weights (the outliers), so the quantization grid after it spans a narrower range, and is
re-solved by ExactOBS on the residual from the second round on. The greedy solvers do not
promise a monotone descent, so the best combination seen is returned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import check_problem
from .grids import fit_uniform_grid
from .hessian import row_losses
from .lowrank import low_rank
from .prune import prune_unstructured
from .quant import quantize
from .result import Result


@dataclass(frozen=True)
class Part:
    """One summand: `solve(target, H)` → Result (`start`, if given, in the first round); `kind`
    names it."""

    kind: str
    solve: Callable
    start: Callable | None = None


def quantized_part(bits: int, symmetric: bool = True, method: str = "exact") -> Part:
    """A uniform per-row grid, fitted to each target, solved by OBQ (or `method`)."""
    return Part(f"w{bits}", lambda T, H: quantize(T, H, fit_uniform_grid(T, bits, symmetric), method=method))


def sparse_part(density: float, method: str = "exact") -> Part:
    """The `density` share of weights kept (the rest zero), chosen by ExactOBS (or `method`)."""
    if not 0 < density < 1:
        raise ValueError(f"a sparse part keeps a share of the weights in (0, 1), got {density}")
    return Part(f"sparse{density:g}", lambda T, H: prune_unstructured(T, H, [1 - density], method=method)[0],
                lambda T, H: prune_unstructured(T, H, [1 - density], method="magnitude")[0])


def low_rank_part(rank: int) -> Part:
    return Part(f"rank{rank}", lambda T, H: low_rank(T, H, [rank])[0])


ROUNDS = 3


def additive(W, H, parts: list, rounds: int = ROUNDS) -> Result:
    """Ŵ = Σ parts, alternating over the parts `rounds` times. Returns the best Result seen, its
    `parts` holding each summand's Result (in the order given)."""
    W, H = check_problem(W, H)
    if len(parts) < 2:
        raise ValueError("an additive combination needs at least two parts")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    W64 = W.astype(np.float64)
    current = [None] * len(parts)
    best = None
    for k in range(rounds):
        for i, part in enumerate(parts):
            others = sum((r.weight.astype(np.float64) for j, r in enumerate(current) if j != i and r is not None),
                         np.zeros_like(W64))
            solve = part.start if k == 0 and part.start is not None else part.solve
            current[i] = solve((W64 - others).astype(np.float32), H)
        if any(r is None for r in current):
            continue
        W_hat = sum(r.weight.astype(np.float64) for r in current)
        rl = row_losses(W, W_hat, H)
        if best is None or rl.sum() < best.loss:
            best = Result(weight=W_hat.astype(np.float32), loss=float(rl.sum()), row_loss=rl, parts=list(current))
        else:
            break  # no progress this round
    return best
