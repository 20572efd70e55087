"""Parts added to a quantized (or sparse) weight, fitted in turns with it (solver.additive):
float outliers (a sparse part keeping a share of the weights, so the grid need not span them)
and a low-rank part. Both are forms for size: onnxruntime folds them when it loads the model."""

from __future__ import annotations

import numpy as np

from .. import solver
from ..errors import OptionError
from ..graph.lowrank import add_low_rank_part
from ..graph.qdq import add_outliers
from .base import Factors, Family, Flag, SparsePart, rows_scaled


class Outliers(SparsePart, Family):
    fields = ("outliers",)
    flags = (Flag("outliers", "--outliers", "with --wbits: also keep this share of each layer's weights in float, "
                                            "added to the quantized ones (fitted by alternating OBQ and ExactOBS), "
                                            "e.g. 0.01", metavar="SHARE"),)
    syntax = {"outliers": "o<share>"}
    role = "addend"
    part = r"o(?P<o>0\.\d+)"
    curves = {"quantized + 1% float outliers": ["w4+o0.010", "w2+o0.010"]}
    budget_levels = {"size": ["w4+o0.010", "w2+o0.010"]}

    def name(self, spec):
        return f"o{spec.outliers:.3f}"

    def parse(self, m):
        return {"outliers": round(float(m["o"]), 3)}

    def check(self, spec):
        if spec.outliers is None:
            return
        if not 0 < spec.outliers < 0.5:
            raise OptionError(f"{{outliers}} is the share of weights kept in float, in (0, 0.5), got {spec.outliers}")
        if spec.wbits is None or spec.abits is not None or getattr(spec, "matmulnbits", False):
            raise OptionError("{outliers} adds a sparse float part to weight-only quantized layers: it needs {wbits}, "
                              "and no {abits} or {matmulnbits}")
        if spec.sparsity is not None or spec.nm is not None or spec.block4 is not None:
            raise OptionError("{outliers} does not combine with pruning ({sparsity}, {nm}, {block4})")

    def check_options(self, options, runtime):
        if options.outliers is not None and options.method not in ("exact", "gptq", "rtn"):
            raise OptionError(f"{{outliers}} quantizes with exact, gptq or rtn, not {options.method}")

    def exact_passes(self, options) -> float:
        return float(options.prune_method == "exact")  # the sparse part's ExactOBS

    def addend(self, W, spec):
        return solver.sparse_part(spec.outliers, spec.prune_method)

    def contribution(self, part):
        return part

    def note(self, parts, weight):
        return f"{sum(np.count_nonzero(p) for p in parts) / weight.size:.2%} outliers in float"

    def export(self, model, items, ctx):
        for layer, s, opt in items:
            ctx.sparse_parts.add(add_outliers(model, layer, layer.weight_from(s.parts[self.key])))

    def suffix(self, parts):
        return " + sparse float outliers"


class PlusRank(Family):
    fields = ("plus_rank",)
    flags = (Flag("plus_rank", "--plus-rank", "with --wbits (and --outliers) or --sparsity: also add a low-rank part "
                                              "costing this share of each layer's multiply-adds, fitted by "
                                              "alternating minimisation and folded into the weight when the model "
                                              "loads (a form for size), e.g. 0.05", metavar="SHARE"),)
    syntax = {"plus_rank": "r<share>"}
    role = "addend"
    part = r"r(?P<pr>0\.\d+)"
    curves = {"quantized + low-rank": ["w4+r0.050", "w2+r0.050"], "sparse + low-rank": ["s0.900+r0.050"]}
    budget_levels = {"size": ["w2+r0.050"]}

    def name(self, spec):
        return f"r{spec.plus_rank:.3f}"

    def parse(self, m):
        return {"plus_rank": round(float(m["pr"]), 3)}

    def check(self, spec):
        if spec.plus_rank is None:
            return
        if not 0 < spec.plus_rank < 1:
            raise OptionError(f"{{plus_rank}} is the share of each layer's multiply-adds its low-rank part keeps, in "
                              f"(0, 1), got {spec.plus_rank}")
        if (spec.wbits is None and spec.sparsity is None) or spec.nm is not None or spec.block4 is not None:
            raise OptionError("{plus_rank} adds a low-rank part to quantized ({wbits}) and/or sparse ({sparsity}) "
                              "weights; it does not combine with {nm} or {block4}")
        kernels = [f"{{{f}}}" for f in ("abits", "matmulnbits") if getattr(spec, f, None)]
        if kernels:
            raise OptionError("{plus_rank} folds its part into the weight, which int8 and MatMulNBits kernels cannot "
                              f"read: drop {' and '.join(kernels)}")
        if spec.wbits is not None and spec.sparsity is not None:
            raise OptionError("{plus_rank} adds to one part, quantized or sparse: for quantized + sparse + low-rank "
                              "use {wbits} with {outliers} and {plus_rank}")

    def unfit(self, layer, spec):
        return f"grouped Conv ({layer.groups} groups): no low-rank part" if layer.groups > 1 else None

    def addend(self, W, spec):
        return solver.low_rank_part(solver.rank_for(*W.shape, spec.plus_rank))

    def take(self, result):
        return Factors(*result.factors)

    def contribution(self, part):
        return part.a.astype(np.float64) @ part.b

    def scaled(self, part, ratio):
        return Factors(rows_scaled(part.a, ratio), part.b)

    def note(self, parts, weight):
        return f"low-rank part of rank {parts[0].rank} added"

    def to_arrays(self, parts, arrays, meta):
        for g, f in enumerate(parts):
            arrays[f"plus_a{g}"], arrays[f"plus_b{g}"] = f.a, f.b
        meta["groups"] = len(parts)

    def from_arrays(self, arrays, meta):
        if "plus_a0" not in arrays:
            return None
        return [Factors(arrays[f"plus_a{g}"], arrays[f"plus_b{g}"]) for g in range(meta["groups"])]

    def export(self, model, items, ctx):
        for layer, s, opt in items:
            f = s.parts[self.key][0]  # ungrouped layers only
            renamed = add_low_rank_part(model, layer, f.a, f.b)
            if renamed:  # the sparse part of sparse + low-rank, under its new name
                ctx.sparse_parts.add(renamed)

    def suffix(self, parts):
        return f" + low-rank part of rank {parts[0].rank}, folded at load"
