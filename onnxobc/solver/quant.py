"""Quantizing a layer onto a per-row grid: OBQ (exact greedy), GPTQ (fixed order, lazy blocks)
or round-to-nearest; optionally keeping a pruning mask (compound compression)."""

from __future__ import annotations

import numpy as np

from .batching import Policy, run_rows
from .checks import check_problem
from .fixed_order import act_order, fixed_order
from .grids import UniformGrid, ValueGrid
from .hessian import inverse, row_losses
from .result import Result

QUANT_METHODS = ("exact", "gptq", "rtn")


def quantize(W, H, grid, method: str = "exact", mask=None, outliers: bool = True,
             gptq_act_order: bool = True, **engine) -> Result:
    """Every weight of W on `grid` (a UniformGrid or ValueGrid with one row per row of W).

    With `mask` (True = kept), pruned weights are fixed at 0 first, with the optimal update of
    the others (so W may be the dense original or an already pruned Ŵ), and only kept weights
    are quantized; the loss is always measured against the W given."""
    W, H = check_problem(W, H)
    if method not in QUANT_METHODS:
        raise ValueError(f"method must be one of {QUANT_METHODS}, got {method!r}")
    if not isinstance(grid, (UniformGrid, ValueGrid)):
        raise ValueError(f"grid must be a UniformGrid or ValueGrid, got {type(grid).__name__}")
    nrows = len(grid.scale) if isinstance(grid, UniformGrid) else grid.values.shape[0]
    if nrows != W.shape[0]:
        raise ValueError(f"the grid has {nrows} rows, W has {W.shape[0]}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != W.shape:
            raise ValueError(f"mask must have W's shape {W.shape}, got {mask.shape}")
    order = None
    if method == "rtn":
        W_hat = grid.project(W if mask is None else W * mask)
        if mask is not None:
            W_hat = W_hat * mask
        rl = row_losses(W, W_hat, H)
    elif method == "gptq":
        def target(v, cols, pruned):
            q = grid.project(v)
            return q if mask is None else np.where(mask[:, cols], q, 0.0)

        W_hat, rl = fixed_order(W, H, target, order=act_order(H) if gptq_act_order else None)
    else:
        Hinv = inverse(H)
        W_hat, order, inc, loss0 = run_rows(Policy("quant", outliers=outliers), W, H, Hinv,
                                            mask=mask, grid=grid, **engine)
        rl = loss0 + inc.sum(axis=1)
    codes = grid.codes(np.asarray(W_hat, dtype=np.float64))
    W_hat = grid.dequantize(codes)  # exactly the values an exported model holds
    if mask is not None:
        W_hat[~mask] = 0
    return Result(weight=W_hat, loss=float(rl.sum()), row_loss=rl, mask=mask, codes=codes, grid=grid, order=order)
