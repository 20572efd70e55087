"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Result:
    """A compressed layer: Ŵ, the loss tr((W − Ŵ) H (W − Ŵ)ᵀ)/2 against the W and H the solver
    was given, and what was chosen: the mask (True = weight kept) and/or the grid codes, or the low-rank factors."""

    weight: np.ndarray  # (rows, cols) float32
    loss: float
    row_loss: np.ndarray  # (rows,) float64
    mask: np.ndarray | None = None
    codes: np.ndarray | None = None
    grid: object | None = None
    order: np.ndarray | None = None  # exact solvers: per row, the columns in the order they were fixed
    factors: tuple | None = None  # low-rank: (A (rows × r), B (r × cols)) with Ŵ = A B
    factor_results: tuple | None = None  # quantized low-rank: the Results of A and of B (codes, grid)
    parts: list | None = None  # additive combinations: each summand's Result, Ŵ = Σ part.weight

    @property
    def sparsity(self) -> float:
        return 0.0 if self.mask is None else float(1 - self.mask.mean())
