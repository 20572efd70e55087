"""The layer-wise solvers: pure array code (NumPy, or CuPy through backend.array_module), no ONNX.

A layer problem is W (rows × cols, rows = outputs, cols = the reduction dimension) and
H = 2/N · Σ x xᵀ (cols × cols). Make H positive definite with `prepare` (dead inputs,
dampening), then call a solver; each returns `Result`s whose `loss` is
tr((W − Ŵ) H (W − Ŵ)ᵀ)/2 = ‖(W − Ŵ)X‖²/N.

Exact solvers take engine options: engine="deferred" (the fast path) or "eager" (the oracle),
device="cpu"|"cuda"|"auto", dtype, flush_every, mem_bytes, progress.
"""

from .additive import ROUNDS as additive_rounds
from .additive import additive, low_rank_part, quantized_part, sparse_part
from .codebook import codebook, quantize_fitted, sign_grid
from .grids import UniformGrid, ValueGrid, fit_uniform_grid
from .hessian import CrossAccumulator, HessianAccumulator, centered, inverse, layer_loss, prepare, refit, refit_with_bias, variance_ratio
from .lowrank import low_rank, quantized_low_rank, rank_for
from .prune import prune_blocks, prune_nm, prune_unstructured, sparsity_grid
from .quant import quantize
from .result import Result
from .structured import prune_groups

__all__ = [
    "CrossAccumulator", "HessianAccumulator", "Result", "centered", "UniformGrid", "ValueGrid", "additive", "additive_rounds", "codebook", "fit_uniform_grid",
    "inverse", "layer_loss", "low_rank", "low_rank_part", "prepare", "prune_blocks", "prune_groups", "prune_nm",
    "prune_unstructured", "quantize", "quantize_fitted", "quantized_low_rank", "quantized_part", "rank_for", "refit", "refit_with_bias",
    "sign_grid", "sparse_part", "sparsity_grid", "variance_ratio",
]
