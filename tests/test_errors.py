"""Bad input to a solver is a ValueError that names the problem."""

import numpy as np
import pytest
from oracles import make_problem

from onnxobc.solver import fit_uniform_grid, prune_blocks, prune_nm, prune_unstructured, quantize

W, H = make_problem(4, 12, seed=0)


@pytest.mark.parametrize("call,match", [
    (lambda: prune_unstructured(np.full_like(W, np.nan), H, [0.5]), "W contains NaN"),
    (lambda: prune_unstructured(W, np.where(np.eye(12) > 0, np.inf, H), [0.5]), "H contains NaN"),
    (lambda: prune_unstructured(W, H[:8, :8], [0.5]), r"H must be \(12, 12\)"),
    (lambda: prune_unstructured(W[0], H, [0.5]), "2-D"),
    (lambda: prune_unstructured(W.astype(int), H, [0.5]), "floating point"),
    (lambda: prune_unstructured(W, H + np.triu(np.ones((12, 12)), 1), [0.5]), "not symmetric"),
    (lambda: prune_unstructured(W, H, [1.0]), r"sparsity must be in \[0, 1\)"),
    (lambda: prune_unstructured(W, H, []), "at least one"),
    (lambda: prune_unstructured(W, H, [0.5], method="obs"), "method must be one of"),
    (lambda: prune_unstructured(W, -np.eye(12), [0.5]), "not positive definite"),
    (lambda: prune_nm(W, H, 2, 5), "cols divisible by 5"),
    (lambda: prune_nm(W, H, 4, 4), "0 < N < M"),
    (lambda: prune_blocks(W, H, [0.5], block=5), "divisible by 5"),
    (lambda: prune_blocks(W, H, [0.5], method="sparsegpt"), "method must be one of"),
    (lambda: quantize(W, H, fit_uniform_grid(W[:2], 4)), "the grid has 2 rows"),
    (lambda: quantize(W, H, "int4"), "grid must be"),
    (lambda: quantize(W, H, fit_uniform_grid(W, 4), mask=np.ones((4, 3))), "mask must have"),
    (lambda: quantize(W, H, fit_uniform_grid(W, 4), engine="fast"), "engine must be one of"),
    (lambda: quantize(W, H, fit_uniform_grid(W, 4), device="tpu"), "device must be one of"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
