"""ONNX in, compressed ONNX out: the flow of DESIGN.md in readable steps.

    load → fold constant per-channel Mul/Add after a Conv/Gemm into it → discover layers →
    calibration capture (Hessians, input means) → solve each layer →
    where a BatchNormalization reads a layer, rescale its channels to the dense output variance →
    write weights, fold each layer's mean shift (W − Ŵ)·E[x] into its bias → verify (checker,
    onnxruntime, outputs against the dense model on held-out samples) → save

Pruned weights are stored as zeros in float32 (as a sparse initializer where that is smaller);
quantized weights as integer codes behind a
per-output-channel DequantizeLinear (graph/qdq.py), so the file shrinks. With --abits 8 the
activations around the compressed layers are quantized too, in the QDQ form the target runtime
fuses into int8 kernels (graph/activation_qdq.py).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
import onnx

from . import solver
from .calib.capture import capture_hessians, capture_ranges
from .calib.feeds import batches, load_calibration, model_inputs
from .faults import point
from .graph.activation_qdq import insert_activation_qdq, quantized_tensors
from .graph.bias import add_output_shift, feeds_batch_norm
from .graph.codebook import OPSET as CODEBOOK_OPSET
from .graph.codebook import index_bits, store_codebook
from .graph.fold import fold_output_affine
from .graph.layers import discover, weight_array
from .graph.lowrank import add_low_rank_part, store_low_rank
from .graph.model import inputs_to_constants, load_model
from .graph.qdq import (add_outliers, ensure_opset, matmulnbits_bits, output_axis, storage_opset, store_matmulnbits,
                        store_quantized)
from .graph.write import drop_unused_initializers, save_atomic, set_weights, sparse_where_smaller
from .memory import memory_budget, within_memory
from .runtimes import ADAPTERS
from .runtimes.onnxruntime import custom_op_library, session

METHODS = ("exact", "gptq", "sparsegpt", "magnitude", "rtn")
# for pruning then quantizing, the baselines pair up: magnitude with RTN, SparseGPT with GPTQ
PRUNE_OF = {"exact": "exact", "sparsegpt": "sparsegpt", "magnitude": "magnitude", "gptq": "sparsegpt",
            "rtn": "magnitude"}
QUANT_OF = {"exact": "exact", "gptq": "gptq", "rtn": "rtn", "sparsegpt": "gptq", "magnitude": "rtn"}


@dataclasses.dataclass
class Options:
    sparsity: float | None = None
    nm: tuple | None = None  # (n, m)
    block4: float | None = None  # sparsity in blocks of 4 input channels
    wbits: int | None = None
    rank: float | None = None  # low-rank: the share of the layer's multiply-adds its two factors keep
    codebook: str | None = None  # fitted grid: "K", "K-row", "binary" or "ternary" (see codebook_kind)
    outliers: float | None = None  # with wbits: a sparse float part keeping this share of weights, added
    plus_rank: float | None = None  # with wbits and/or sparsity: a low-rank part (this share of multiply-adds), added
    symmetric: bool = True
    method: str = "exact"
    damp: float = 0.01
    skip: tuple = ()  # weight or node names left dense
    batch_size: int = 8
    holdout: float = 0.25  # share of calibration samples kept for verification
    bias_correction: bool = True  # fold (W − Ŵ)·E[x] into each compressed layer's bias
    variance_correction: bool = True  # rescale channels read by a BatchNormalization to the dense variance
    abits: int | None = None  # 8: static int8 activations (W8A8)
    runtime: str = "onnxruntime"  # the int8 form of --abits: onnxruntime (U8S8 QDQ), tensorrt (symmetric QDQ)
    #                               or deepsparse (QLinearConv / MatMulInteger, per-tensor weights)
    matmulnbits: bool = False  # quantized MatMul weights as onnxruntime's MatMulNBits instead of DequantizeLinear
    custom_ops: tuple = ()  # custom-op libraries for onnxruntime: "extensions" or library paths
    max_memory: float | None = None  # GiB a layer's Hessians and solve may take (default: the memory available)
    ray: str | None = None  # solve the layers on this Ray cluster ("auto", an address, or "local")
    device: str = "auto"  # where Hessians are summed and the exact solvers run: "cpu", "cuda" (CuPy), or
    #                       "auto": the GPU where CuPy has one, else the CPU

    @property
    def per_tensor(self) -> bool:
        """One weight grid per layer (DeepSparse's int8 kernels want per-tensor weight scales)."""
        return self.runtime == "deepsparse" and self.abits is not None

    def check(self, planned: bool = False):
        """Raise ValueError on a bad combination. `planned`: a budget picks the levels, so the
        options must not pick any themselves."""
        if planned and any(v is not None for v in (self.sparsity, self.nm, self.block4, self.wbits, self.abits,
                                                   self.rank, self.codebook, self.outliers, self.plus_rank)):
            raise ValueError("a budget (--speedup, --size, --flops, --bops) chooses each layer's level itself: "
                             "drop --sparsity, --nm, --block4, --wbits, --abits, --rank, --codebook, --outliers and "
                             "--plus-rank")
        if self.rank is not None or self.codebook is not None:
            self._check_alone()
        if self.outliers is not None:
            self._check_outliers()
        if self.plus_rank is not None:
            self._check_plus_rank()
        if self.abits is not None and self.abits != 8:
            raise ValueError(f"--abits supports 8 (int8 activations), got {self.abits}")
        if self.abits is not None and self.wbits not in (7, 8):
            raise ValueError("--abits 8 quantizes activations for int8 kernels, which need int8 weights as well: "
                             "--wbits 8 (or 7, which avoids the saturation of onnxruntime's U8S8 kernels on "
                             "CPUs without VNNI)")
        if not planned and all(v is None for v in (self.sparsity, self.nm, self.block4, self.wbits, self.rank,
                                                   self.codebook)):
            raise ValueError("nothing to do: give --sparsity, --nm, --block4, --wbits, --rank or --codebook")
        if sum(x is not None for x in (self.sparsity, self.nm, self.block4)) > 1:
            raise ValueError("--sparsity, --nm and --block4 are exclusive")
        if self.block4 is not None and not 0 < self.block4 < 1:
            raise ValueError(f"--block4 must be in (0, 1), got {self.block4}")
        if self.block4 is not None and PRUNE_OF.get(self.method) == "sparsegpt":
            raise ValueError(f"--block4 is solved by exact or magnitude (with rtn when quantizing), not {self.method}")
        if self.nm is not None and not 0 < self.nm[0] < self.nm[1]:
            raise ValueError(f"--nm needs 0 < N < M, got {self.nm[0]}:{self.nm[1]}")
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        prune = self.sparsity is not None or self.nm is not None or self.block4 is not None
        if self.method in ("gptq", "rtn") and prune and self.wbits is None:
            raise ValueError(f"--method {self.method} quantizes; use exact, sparsegpt or magnitude for pruning")
        if self.method in ("sparsegpt", "magnitude") and self.wbits is not None and not prune:
            raise ValueError(f"--method {self.method} prunes; use exact, gptq or rtn with --wbits")
        if self.sparsity is not None and not 0 < self.sparsity < 1:
            raise ValueError(f"--sparsity must be in (0, 1), got {self.sparsity}")
        if self.matmulnbits and (self.wbits is None or self.abits is not None or self.runtime != "onnxruntime"):
            raise ValueError("--matmulnbits writes weight-only quantized MatMuls for onnxruntime: it needs --wbits, "
                             "and no --abits or other --runtime")
        for lib in self.custom_ops:
            custom_op_library(lib)  # a clear error now rather than after calibration
        if self.runtime not in ADAPTERS:
            raise ValueError(f"--runtime must be one of {tuple(ADAPTERS)}, got {self.runtime!r}")
        if self.runtime == "deepsparse" and self.wbits is not None and self.wbits <= 4:
            raise ValueError("DeepSparse reads opsets up to 19 and 4-bit weights are stored at opset 21: "
                             "use --wbits 5 to 8 for --runtime deepsparse")
        if self.runtime == "tensorrt" and self.abits is not None and not self.symmetric:
            raise ValueError("TensorRT runs symmetric int8 only: drop --asym for --runtime tensorrt")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.max_memory is not None and not self.max_memory > 0:
            raise ValueError(f"--max-memory is in GiB and must be positive, got {self.max_memory}")

    def _check_outliers(self):
        if not 0 < self.outliers < 0.5:
            raise ValueError(f"--outliers is the share of weights kept in float, in (0, 0.5), got {self.outliers}")
        if self.wbits is None or self.abits is not None or self.matmulnbits:
            raise ValueError("--outliers adds a sparse float part to weight-only quantized layers: it needs --wbits, "
                             "and no --abits or --matmulnbits")
        if self.sparsity is not None or self.nm is not None or self.block4 is not None:
            raise ValueError("--outliers does not combine with pruning (--sparsity, --nm, --block4)")
        if self.method not in ("exact", "gptq", "rtn"):
            raise ValueError(f"--outliers quantizes with exact, gptq or rtn, not {self.method}")

    def _check_plus_rank(self):
        if not 0 < self.plus_rank < 1:
            raise ValueError(f"--plus-rank is the share of each layer's multiply-adds its low-rank part keeps, in "
                             f"(0, 1), got {self.plus_rank}")
        if (self.wbits is None and self.sparsity is None) or self.nm is not None or self.block4 is not None:
            raise ValueError("--plus-rank adds a low-rank part to quantized (--wbits) and/or sparse (--sparsity) "
                             "weights; it does not combine with --nm or --block4")
        if self.abits is not None or self.matmulnbits:
            raise ValueError("--plus-rank folds its part into the weight, which int8 and MatMulNBits kernels cannot "
                             "read: drop --abits and --matmulnbits")
        if self.wbits is not None and self.sparsity is not None:
            raise ValueError("--plus-rank adds to one part, quantized or sparse: for quantized + sparse + low-rank "
                             "use --wbits with --outliers and --plus-rank")

    def _check_alone(self):
        """--rank (its factors optionally quantized by --wbits) and --codebook: one compression on its own."""
        what = "--rank" if self.rank is not None else "--codebook"
        others = [n for n, v in (("--sparsity", self.sparsity), ("--nm", self.nm), ("--block4", self.block4),
                                 ("--wbits", self.wbits if self.rank is None else None), ("--abits", self.abits),
                                 ("--matmulnbits", self.matmulnbits or None),
                                 ("--codebook", self.codebook if self.rank is not None else None),
                                 ("--outliers", self.outliers), ("--plus-rank", self.plus_rank)) if v is not None]
        if others:
            raise ValueError(f"{what} is a compression of its own{' (--wbits quantizes its factors)' * (what == '--rank')}"
                             f": drop {', '.join(others)}")
        if self.rank is not None:
            if not 0 < self.rank < 1:
                raise ValueError(f"--rank is the share of each layer's multiply-adds kept, in (0, 1), got {self.rank}")
            if self.wbits is None and self.method != "exact":
                raise ValueError(f"--rank is solved in closed form; --method {self.method} does not apply")
            if self.wbits is not None and self.method not in ("exact", "gptq", "rtn"):
                raise ValueError(f"--rank --wbits quantizes the factors with exact, gptq or rtn, not {self.method}")
        else:
            codebook_kind(self.codebook)
            if self.method not in ("exact", "gptq", "rtn"):
                raise ValueError(f"--codebook places weights with exact, gptq or rtn, not {self.method}")


def codebook_kind(text: str) -> tuple:
    """--codebook's value → (values, kind): "16" one 16-value codebook per layer ("shared"),
    "16-row" one per output channel ("rows"), "binary" {−c, c} and "ternary" {−c, 0, c} per
    output channel ("sign")."""
    if text in ("binary", "ternary"):
        return (2 if text == "binary" else 3), "sign"
    k, _, per = str(text).partition("-")
    if not k.isdigit() or per not in ("", "row") or not 2 <= int(k) <= 256:
        raise ValueError(f"--codebook takes K (2 to 256 values per layer), K-row (per output channel), binary or "
                         f"ternary, got {text!r}")
    return int(k), "rows" if per else "shared"


@dataclasses.dataclass
class _Group:
    """One group's matrix solved: Ŵ, its layer loss, and the parts it is stored as."""

    weight: np.ndarray
    loss: float
    grid: object = None  # the quantized part's grid (UniformGrid, or ValueGrid for a fitted codebook)
    factors: tuple | None = None  # low-rank: (A, B) with Ŵ = A B
    factor_grids: tuple | None = None  # quantized factors: (grid of A, grid of B)
    sparse: np.ndarray | None = None  # an added sparse float part (outliers, or sparse + low-rank's sparse part)
    plus: tuple | None = None  # an added low-rank part (A, B)

    def scaled(self, ratio) -> "_Group":
        """Every output channel (row) multiplied by `ratio`: the same codes on rescaled grids."""
        def rows(M):
            return None if M is None else (M * ratio[:, None]).astype(np.float32)
        return _Group(rows(self.weight), self.loss, None if self.grid is None else self.grid.scaled(ratio),
                      None if self.factors is None else (rows(self.factors[0]), self.factors[1]),
                      None if self.factor_grids is None else (self.factor_grids[0].scaled(ratio), self.factor_grids[1]),
                      rows(self.sparse), None if self.plus is None else (rows(self.plus[0]), self.plus[1]))

    def codes(self):
        """The quantized part's integer codes: Ŵ less the added parts, on the grid."""
        rest = np.asarray(self.weight, np.float64)
        if self.sparse is not None:
            rest = rest - self.sparse
        if self.plus is not None:
            rest = rest - self.plus[0].astype(np.float64) @ self.plus[1]
        return self.grid.codes(rest)


def _solve(W, H, opt: Options, pruned=None, grid=None) -> _Group:
    """One group's matrix: prune, quantize, or prune then quantize the survivors; or low-rank
    (its factors quantized with wbits), or a fitted codebook; or an additive combination
    (--outliers, --plus-rank). `pruned`, a pruning Result computed already (one level of a
    many-level pass), replaces the pruning step; `grid`, the quantization grid (per-tensor
    weights), replaces its fitting."""
    if opt.outliers is not None or opt.plus_rank is not None:
        return _solve_additive(W, H, opt)
    if opt.rank is not None:
        rank = solver.rank_for(*W.shape, opt.rank)
        if opt.wbits is None:
            r = solver.low_rank(W, H, [rank])[0]
            return _Group(r.weight, r.loss, factors=r.factors)
        r = solver.quantized_low_rank(W, H, rank, opt.wbits, opt.symmetric, QUANT_OF[opt.method], opt.damp)
        return _Group(r.weight, r.loss, factors=r.factors, factor_grids=tuple(f.grid for f in r.factor_results))
    if opt.codebook is not None:
        k, kind = codebook_kind(opt.codebook)
        if kind == "sign":
            r = solver.quantize_fitted(W, H, solver.sign_grid(W, H, ternary=k == 3), "sign", QUANT_OF[opt.method])
        else:
            r = solver.codebook(W, H, k, per_row=kind == "rows", method=QUANT_OF[opt.method])
        return _Group(r.weight, r.loss, r.grid)
    mask = None
    loss = 0.0
    if opt.sparsity is not None or opt.nm is not None or opt.block4 is not None:
        method = PRUNE_OF[opt.method]
        if pruned is not None:
            r = pruned
        elif opt.sparsity is not None:
            r = solver.prune_unstructured(W, H, [opt.sparsity], method=method, device=opt.device)[0]
        elif opt.nm is not None:
            r = solver.prune_nm(W, H, *opt.nm, method=method, device=opt.device)
        else:
            r = solver.prune_blocks(W, H, [opt.block4], block=4, method=method, device=opt.device)[0]
        W_hat, mask, loss = r.weight, r.mask, r.loss
    if opt.wbits is not None:
        if grid is None:
            grid = solver.fit_uniform_grid(W if mask is None else W_hat, opt.wbits, opt.symmetric)
        r = solver.quantize(W, H, grid, method=QUANT_OF[opt.method], mask=mask, device=opt.device)
        W_hat, loss = r.weight, r.loss
    return _Group(W_hat, loss, grid)


def _solve_additive(W, H, opt: Options) -> _Group:
    """Ŵ = the outliers (a sparse float part) + a low-rank part + the quantized (or sparse) part,
    whichever are asked for, by alternating minimisation (solver.additive)."""
    parts, kinds = [], []
    if opt.outliers is not None:
        parts.append(solver.sparse_part(opt.outliers, PRUNE_OF[opt.method]))
        kinds.append("sparse")
    if opt.plus_rank is not None:
        parts.append(solver.low_rank_part(solver.rank_for(*W.shape, opt.plus_rank)))
        kinds.append("plus")
    if opt.wbits is not None:
        parts.append(solver.quantized_part(opt.wbits, opt.symmetric, QUANT_OF[opt.method]))
        kinds.append("quant")
    else:
        parts.append(solver.sparse_part(1 - opt.sparsity, PRUNE_OF[opt.method]))
        kinds.append("sparse")
    r = solver.additive(W, H, parts)
    by = dict(zip(kinds, r.parts))
    return _Group(r.weight, r.loss, by["quant"].grid if "quant" in by else None,
                  sparse=by["sparse"].weight if "sparse" in by else None,
                  plus=by["plus"].factors if "plus" in by else None)


def _outputs(model, data: dict, batch_size: int, custom_ops=(), optimize: bool = True):
    """The outputs of `model` (a ModelProto or a path) on `data`, batch by batch."""
    sess = session(model, custom_ops=custom_ops, optimize=optimize)
    names = [o.name for o in sess.get_outputs()]
    spec = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    parts = [sess.run(names, feed) for feed in batches(data, model_inputs(spec), batch_size)]
    return {n: np.concatenate([p[i] for p in parts]) for i, n in enumerate(names)}


def _compress_layer(layer, w, hessians, options: Options, normalized: bool = False, pruned=None) -> "Solved":
    """Solve every group of one layer; with `normalized` (a BatchNormalization reads its output)
    rescale each output channel to the dense channel's variance."""
    if not np.isfinite(w).all():
        raise ValueError(f"weight {layer.weight!r} contains NaN or Inf")
    opt, note = options, ""
    channels = layer.weight_shape[1] if layer.op == "Conv" else layer.cols
    if options.nm is not None and channels % options.nm[1]:
        opt = dataclasses.replace(options, nm=None)
        note = f"{channels} input channels are not divisible by {options.nm[1]}: no N:M"
    if options.block4 is not None and channels % 4:
        opt = dataclasses.replace(options, block4=None)
        note = f"{channels} input channels are not divisible by 4: no 4-blocks"
    if options.rank is not None and layer.groups > 1:
        opt = dataclasses.replace(options, rank=None, wbits=None)
        note = f"grouped Conv ({layer.groups} groups): no low-rank"
    if options.plus_rank is not None and layer.groups > 1:
        opt = dataclasses.replace(options, plus_rank=None)
        note = f"grouped Conv ({layer.groups} groups): no low-rank part"
    if dead_inputs(hessians):
        opt = dataclasses.replace(options, sparsity=None, nm=None, block4=None, wbits=None, rank=None, codebook=None,
                                  outliers=None, plus_rank=None)
        note = "its inputs are all zero on the calibration data: nothing to fit, left dense"
    dense = layer.matrices(w)
    solved = any(v is not None for v in (opt.sparsity, opt.nm, opt.block4, opt.wbits, opt.rank, opt.codebook))
    grids = [None] * len(dense)
    if opt.per_tensor and opt.wbits is not None:  # one grid across the groups too
        whole = solver.fit_uniform_grid(np.concatenate(dense), opt.wbits, opt.symmetric, per_tensor=True)
        grids = [whole.take(slice(g * len(M), (g + 1) * len(M))) for g, M in enumerate(dense)]
    groups = [_solve(*solver.prepare(M, acc.hessian, options.damp), opt, None if pruned is None else pruned[g],
                     grids[g]) for g, (M, acc) in enumerate(zip(dense, hessians))] if solved else []
    loss = sum(x.loss for x in groups)
    if solved and normalized and options.variance_correction and opt.per_tensor:
        note = "; ".join(x for x in (note, "no variance correction (per-tensor weight scales)") if x)
    elif solved and normalized and options.variance_correction:
        groups = [x.scaled(solver.variance_ratio(M, x.weight, acc.hessian, acc.mean))
                  for x, M, acc in zip(groups, dense, hessians)]
        loss = sum(solver.layer_loss(M, x.weight, acc.hessian) for M, x, acc in zip(dense, groups, hessians))
        note = "; ".join(x for x in (note, "variance corrected (BatchNormalization follows)") if x)
    mats = [x.weight for x in groups] if solved else list(dense)
    first = groups[0] if groups else _Group(None, 0.0)
    if first.factors is not None:
        note = "; ".join(x for x in (f"rank {first.factors[0].shape[1]}", note) if x)
    if first.plus is not None:
        note = "; ".join(x for x in (note, f"low-rank part of rank {first.plus[0].shape[1]} added") if x)
    if first.sparse is not None and first.grid is not None:
        share = sum(np.count_nonzero(x.sparse) for x in groups) / w.size
        note = "; ".join(x for x in (note, f"{share:.2%} outliers in float") if x)
    weight = layer.weight_from(mats)
    shift = None
    if options.bias_correction and solved:
        shift = np.concatenate([(M.astype(np.float64) - Mh) @ acc.mean for M, Mh, acc in zip(dense, mats, hessians)])
    dense_out = sum(solver.layer_loss(M, 0, acc.hessian) for M, acc in zip(dense, hessians))
    row = summary_row(layer, weight, loss, loss / dense_out if dense_out > 0 else 0.0, note)
    row["applied"] = solved  # False: the compression does not fit this layer, which stays dense
    quantized = first.grid is not None

    def each(field):
        return [getattr(x, field) for x in groups] if getattr(first, field) is not None else None

    return Solved(weight, row, shift, [x.codes() for x in groups] if quantized else None, each("grid"),
                  each("factors"), each("sparse"), each("factor_grids"), each("plus"))


def dead_inputs(hessians) -> bool:
    """Whether some group's inputs are all zero on the calibration data (a Hessian of zeros)."""
    return any(not acc.diagonal.any() for acc in hessians)


def summary_row(layer, weight, loss: float = 0.0, relative: float = 0.0, note: str = "") -> dict:
    """A layer's line in the summary and the report."""
    return {"weight": layer.weight, "op": layer.op, "shape": f"{layer.groups}×{layer.rows}×{layer.cols}",
            "sparsity": float(np.mean(weight == 0)), "layer_loss": loss, "relative_layer_error": relative,
            "note": note}


def _silent(stage, done, total, detail=""):
    pass


def _counter(progress, stage, total, detail):
    """A callback adding up samples for `progress`, which it calls once at 0 right away."""
    seen = [0]

    def add(k):
        seen[0] += k
        progress(stage, seen[0], total, detail)

    add(0)
    return add


@dataclasses.dataclass
class Prepared:
    """A loaded model with its layers and calibration statistics, ready for solving."""

    src: pathlib.Path
    model: onnx.ModelProto
    layers: list
    skipped: list
    calib: dict  # the samples that calibrate
    held: dict  # the samples that verify
    hessians: dict  # weight → [HessianAccumulator per group]
    ranges: dict  # activation → (lo, hi), for int8 activations
    folded: int = 0  # constant per-channel Mul/Add/Sub/Div nodes folded into the layers before them
    notes: list = dataclasses.field(default_factory=list)  # what the input had that was changed or left alone


def prepare(model_path, calib, options: Options, progress=None, activation_ranges: bool | None = None,
            hessians: bool = True) -> Prepared:
    """Load, discover, split the calibration data, capture Hessians (unless not `hessians`: the
    stages that only write from a database) and activation ranges (when `activation_ranges`, by
    default when options.abits)."""
    progress = progress or _silent
    src = pathlib.Path(model_path)
    model = load_model(src)
    notes = []
    promoted = inputs_to_constants(model)
    if promoted:
        notes.append(f"{len(promoted)} initializers were also graph inputs (overridable): the output keeps them as "
                     f"constants only ({', '.join(promoted[:5])}{', …' if len(promoted) > 5 else ''})")
    folded = fold_output_affine(model)
    layers, skipped = discover(model)
    layers = [l for l in layers if l.weight not in options.skip and not set(l.nodes) & set(options.skip)]
    layers, over = within_memory(layers, memory_budget(options.max_memory))
    skipped += over
    if not layers:
        raise ValueError(f"{src}: no compressible layer (Conv, Gemm, MatMul with a constant weight)"
                         + (f"; skipped: {'; '.join(f'{s.name}: {s.reason}' for s in skipped)}" if skipped else ""))
    data = load_calibration(calib, model)
    n = len(next(iter(data.values())))
    n_hold = int(round(n * options.holdout)) if n > 1 else 0
    calib_part = {k: v[: n - n_hold] for k, v in data.items()}
    held = {k: v[n - n_hold:] for k, v in data.items()} if n_hold else calib_part
    wanted = bool(options.abits) if activation_ranges is None else activation_ranges
    observe = sum(quantized_tensors(model, layers, options.runtime), []) if wanted else []
    captured = layers if hessians else []
    hessians, ranges = {}, {}
    if captured or observe:
        hessians, ranges = capture_hessians(model, captured, calib_part, options.batch_size, observe,
                                            options.custom_ops,
                                            progress=_counter(progress, "capture", n - n_hold,
                                                              f"samples through {len(captured)} layers"),
                                            device=options.device)
    if observe:
        ranges = capture_ranges(model, ranges, calib_part, options.batch_size, options.runtime == "tensorrt",
                                options.custom_ops, progress=_counter(progress, "ranges", n - n_hold,
                                                                      f"samples, histograms of {len(observe)} "
                                                                      "activations"))
    return Prepared(src, model, layers, skipped, calib_part, held, hessians, ranges, folded, notes)


@dataclasses.dataclass
class Solved:
    """One layer compressed at one setting."""

    weight: np.ndarray  # Ŵ in the ONNX weight's layout
    row: dict  # the summary row
    shift: np.ndarray | None  # output mean shift to fold into the bias
    codes: list | None  # integer codes per group, when quantized (uniform grid or codebook)
    grids: list | None  # UniformGrid or ValueGrid per group
    factors: list | None = None  # low-rank: (A, B) per group with Ŵ = A B
    sparse: list | None = None  # per group, an added sparse float part (outliers, or sparse + low-rank's)
    factor_grids: list | None = None  # quantized low-rank factors: (grid of A, grid of B) per group
    plus: list | None = None  # per group, an added low-rank part (A, B)


@dataclasses.dataclass
class Problem:
    """What solving one layer takes, and no ONNX: it travels as is to a cluster's workers."""

    layer: object  # graph.layers.Layer
    weight: np.ndarray  # in the ONNX layout
    hessians: list  # HessianAccumulator per group
    normalized: bool  # a BatchNormalization reads the layer's output (variance correction)


def problem(prep: Prepared, layer) -> Problem:
    return Problem(layer, weight_array(prep.model, layer.weight), prep.hessians[layer.weight],
                   feeds_batch_norm(prep.model, layer))


def solve_settings(p: Problem, settings: list) -> list:
    """`p` solved at each of `settings` (Options, or None for the dense weight); one greedy pass
    gives every unstructured (and every 4-block) sparsity among them."""
    passes = _shared_passes(p, settings)
    out = []
    for i, opt in enumerate(settings):
        point()
        out.append(_dense(p) if opt is None else
                   _compress_layer(p.layer, p.weight, p.hessians, opt, p.normalized, passes.get(i)))
    return out


def solve_all(prep: Prepared, jobs: list, options: Options):
    """Solve each (layer, settings) of `jobs`, here or on the Ray cluster of options.ray; yields
    (layer, [Solved per setting], cluster status) as each finishes (in order here)."""
    if options.ray:
        from .cluster import solve_on_cluster

        problems = [(problem(prep, layer), settings) for layer, settings in jobs]
        for i, solved, status in solve_on_cluster(problems, options.ray, options.device):
            yield jobs[i][0], solved, status
        return
    for layer, settings in jobs:
        yield layer, solve_settings(problem(prep, layer), settings), ""


def _shared_passes(p: Problem, settings: list) -> dict:
    """setting index → per-group pruning Results, from one pass per family (unstructured, 4-blocks)."""
    out = {}
    layer = p.layer
    channels = layer.weight_shape[1] if layer.op == "Conv" else layer.cols
    for kind in ("sparsity", "block4"):
        members = [i for i, opt in enumerate(settings) if opt is not None and getattr(opt, kind) is not None]
        if len(members) < 2 or (kind == "block4" and channels % 4) or dead_inputs(p.hessians):
            continue
        values = sorted({getattr(settings[i], kind) for i in members})
        results = dict(zip(values, _pruning_pass(p, settings[members[0]], kind, values)))
        out.update({i: results[getattr(settings[i], kind)] for i in members})
    return out


def _pruning_pass(p: Problem, options: Options, kind: str, sparsities: list) -> list:
    """One greedy pass giving every sparsity level at once (kind "sparsity": unstructured,
    "block4": 4-blocks): for each level, the pruning Result of each group."""
    per_group = []
    for M, acc in zip(p.layer.matrices(p.weight), p.hessians):
        W, H = solver.prepare(M, acc.hessian, options.damp)
        method = PRUNE_OF[options.method]
        per_group.append(solver.prune_unstructured(W, H, sparsities, method=method, device=options.device)
                         if kind == "sparsity" else
                         solver.prune_blocks(W, H, sparsities, block=4, method=method, device=options.device))
    return [[g[i] for g in per_group] for i in range(len(sparsities))]


def _dense(p: Problem) -> Solved:
    return Solved(p.weight, summary_row(p.layer, p.weight, note="dense"), None, None, None, None)


def write(prep: Prepared, solved: dict, options: dict) -> onnx.ModelProto:
    """The compressed model: `solved[weight]` written for each layer in the format its
    `options[weight]` asks for (layers not in `solved` stay as they are). Fills each summary
    row's "storage"."""
    layers = [l for l in prep.layers if l.weight in solved]
    # a sparse part alone under a low-rank part (sparse + low-rank) is the weight initializer itself
    out = set_weights(prep.model, {l.weight: l.weight_from(solved[l.weight].sparse) if _sparse_base(solved[l.weight])
                                   else solved[l.weight].weight for l in layers})
    for l in layers:
        if solved[l.weight].shift is not None:
            add_output_shift(out, l, solved[l.weight].shift)
    coded = [l for l in layers if solved[l.weight].codes is not None]
    books = {l.weight for l in coded if isinstance(solved[l.weight].grids[0], solver.ValueGrid)}
    quantized = [l for l in coded if l.weight not in books]
    nbits = {l.weight for l in quantized if options[l.weight].matmulnbits and l.op == "MatMul"}
    opsets = [storage_opset(options[l.weight].wbits) for l in quantized if l.weight not in nbits]
    opsets += [storage_opset(options[l.weight].wbits) for l in layers if solved[l.weight].factor_grids is not None]
    if books:
        opsets.append(CODEBOOK_OPSET)
    if opsets:
        out = ensure_opset(out, max(opsets))
    for l in layers:
        s, opt = solved[l.weight], options[l.weight]
        if s.factors is not None:
            store_low_rank(out, l, *s.factors[0], None if s.factor_grids is None else
                           (*s.factor_grids[0], opt.wbits, opt.symmetric))
    for l in coded:
        if l.weight in books:
            s = solved[l.weight]
            store_codebook(out, l, l.weight_from(s.codes), np.concatenate([g.values for g in s.grids]))
    scales, sparse_parts = {}, set()
    for l in quantized:
        s, opt = solved[l.weight], options[l.weight]
        scales[l.weight] = np.concatenate([g.scale for g in s.grids])
        zero = np.concatenate([g.zero for g in s.grids])
        if l.weight in nbits:
            store_matmulnbits(out, l, s.codes[0], scales[l.weight], zero, opt.wbits, opt.symmetric)
        else:
            store_quantized(out, l.weight, output_axis(l), l.weight_from(s.codes), scales[l.weight], zero, opt.wbits,
                            opt.symmetric)
        if s.sparse is not None:
            sparse_parts.add(add_outliers(out, l, l.weight_from(s.sparse)))
    for l in layers:
        if solved[l.weight].plus is not None:
            renamed = add_low_rank_part(out, l, *solved[l.weight].plus[0])
            if renamed:  # the sparse part of sparse + low-rank, under its new name
                sparse_parts.add(renamed)
    int8 = [l for l in quantized if options[l.weight].abits]
    for runtime in sorted({options[l.weight].runtime for l in int8}):
        insert_activation_qdq(out, [l for l in int8 if options[l.weight].runtime == runtime], prep.ranges, scales,
                              runtime)
    if int8:
        drop_unused_initializers(out)
    sparse = sparse_where_smaller(out, {l.weight for l in layers} - {l.weight for l in coded} | sparse_parts)
    for l in layers:
        s = solved[l.weight]
        s.row["storage"] = _storage(l, s, options[l.weight], sparse, nbits)
    if any(options[l.weight].runtime == "deepsparse" for l in layers):
        from .runtimes.deepsparse import compatible

        out = compatible(out)
    return out


def _sparse_base(s: Solved) -> bool:
    return s.sparse is not None and s.codes is None


def _storage(layer, s: Solved, opt: Options, sparse, nbits) -> str:
    """How `layer` is stored, for the summary."""
    if s.factors is not None:
        return f"low-rank, rank {s.factors[0][0].shape[1]}" + (f", int{opt.wbits} factors" if s.factor_grids else "")
    plus = "" if s.plus is None else f" + low-rank part of rank {s.plus[0][0].shape[1]}, folded at load"
    if _sparse_base(s):
        return f"sparse{plus}"
    if s.codes is not None and isinstance(s.grids[0], solver.ValueGrid):
        k = s.grids[0].values.shape[1]
        return f"codebook, {k} values, {index_bits(k)}-bit indices"
    if layer.weight in sparse:
        return "sparse"
    if layer.weight in nbits:
        return f"MatMulNBits {matmulnbits_bits(opt.wbits)}-bit"
    if s.sparse is not None:
        return f"int{opt.wbits} + sparse float outliers{plus}"
    if s.codes is not None and opt.per_tensor:
        return f"int{opt.wbits}, per-tensor"
    return f"int{opt.wbits}{plus}" if s.codes is not None else "float32"


def _check_paths(src, dst):
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError("the output path is the input path; the input is never overwritten")
    if not dst.parent.is_dir():
        raise ValueError(f"{dst.parent}: the output folder does not exist")
    if dst.is_dir():
        raise ValueError(f"{dst}: is a folder, not a file path for the output")
    return src, dst


def finish(prep: Prepared, out_model: onnx.ModelProto, dst, rows: list, options: Options, t0: float,
           extra: dict | None = None) -> dict:
    """Verify `out_model` against the dense model on the held-out samples, save it atomically,
    and return the report."""
    report = {"input": str(prep.src), "output": str(dst), "options": dataclasses.asdict(options), "layers": rows,
              "skipped": [dataclasses.asdict(s) for s in prep.skipped], "notes": prep.notes, "folded_nodes": prep.folded,
              **(extra or {})}
    report["verification"] = verify(prep.src, out_model, prep.held, options.batch_size,
                                    any("QuantizeLinear" == n.op_type for n in out_model.graph.node),
                                    options.custom_ops)
    save_atomic(out_model, dst)
    report["bytes"] = {"input": prep.src.stat().st_size, "output": pathlib.Path(dst).stat().st_size}
    report["seconds"] = time.perf_counter() - t0
    return report


def compress(model_path, out_path, calib, options: Options, progress=None) -> dict:
    """Compress `model_path` into `out_path`, every layer with `options`; returns the report (also
    what --report writes). `progress(stage, done, total, detail)`, if given, is called as
    capture and solve advance."""
    progress = progress or _silent
    options.check()
    src, dst = _check_paths(model_path, out_path)
    t0 = time.perf_counter()
    prep = prepare(src, calib, options, progress)
    solved = {}
    progress("solve", 0, len(prep.layers), "")
    for layer, (s,), status in solve_all(prep, [(layer, [options]) for layer in prep.layers], options):
        solved[layer.weight] = s
        progress("solve", len(solved), len(prep.layers), layer.weight + status)
    solved = {l.weight: solved[l.weight] for l in prep.layers}  # in the model's order, as a cluster finishes in any
    out_model = write(prep, solved, {l.weight: options for l in prep.layers})
    return finish(prep, out_model, dst, [s.row for s in solved.values()], options, t0)


def _relative_errors(ref: dict, got: dict) -> dict:
    errors = {}
    for name in ref:
        a, b = ref[name].astype(np.float64), got[name].astype(np.float64)
        if not np.isfinite(b).all():
            raise ValueError(f"the compressed model's output {name!r} contains NaN or Inf")
        errors[name] = float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30))
    return errors


def verify(dense, compressed: onnx.ModelProto, data: dict, batch_size: int, int8_kernels: bool = False, custom_ops=()) -> dict:
    """onnx.checker, an onnxruntime session, and each output's relative error against the dense
    model, ‖y − y_dense‖ / ‖y_dense‖, on the held-out samples. With `int8_kernels`, also the error
    of the QDQ graph run as written (no fusion), which the fused int8 kernels should match: a
    much larger fused error means the kernels saturate on this CPU."""
    onnx.checker.check_model(compressed)
    ref = _outputs(dense, data, batch_size, custom_ops)
    out = {"checker": "passed", "onnxruntime": "loaded and ran", "samples": len(next(iter(data.values()))),
           "relative_output_error": _relative_errors(ref, _outputs(compressed, data, batch_size, custom_ops))}
    if int8_kernels:
        out["unfused_relative_output_error"] = _relative_errors(ref, _outputs(compressed, data, batch_size, custom_ops,
                                                                              optimize=False))
    return out
