"""Low-rank: each layer as two smaller ones, Ŵ = A B from one SVD of W·chol(H) (the optimal
rank-r fit of the layer objective), keeping a share of its multiply-adds; with wbits both
factors are quantized too (OBQ)."""

from __future__ import annotations

from .. import solver
from ..errors import OptionError
from ..graph.lowrank import store_low_rank
from ..graph.qdq import storage_opset
from .base import Factors, Family, Fit, Flag, rows_scaled
from .quantize import uniform_grid


class LowRank(Family):
    fields = ("rank",)
    flags = (Flag("rank", "--rank", "low-rank: each layer becomes two smaller ones keeping this share of its "
                                    "multiply-adds, e.g. 0.5 (grouped Convs stay dense); with --wbits both factors "
                                    "are quantized too", metavar="SHARE"),)
    syntax = {"rank": "lr<share>"}
    role = "alone"
    part = r"lr(?P<r>0\.\d+)"
    curves = {"low-rank": ["lr0.750", "lr0.500", "lr0.250"], "low-rank, 4-bit factors": ["lr0.500+w4", "lr0.250+w4"]}
    budget_levels = {"size": ["lr0.750", "lr0.500", "lr0.250", "lr0.125", "lr0.500+w4", "lr0.250+w4"],
                     "flops": ["lr0.750", "lr0.500", "lr0.250", "lr0.125"],
                     "bops": ["lr0.750", "lr0.500", "lr0.250", "lr0.125"]}
    allowed = ("wbits",)  # quantized factors
    alone_note = " ({wbits} quantizes its factors)"

    def name(self, spec):
        return f"lr{spec.rank:.3f}"

    def parse(self, m):
        return {"rank": round(float(m["r"]), 3)}

    def check(self, spec):
        if spec.rank is not None and not 0 < spec.rank < 1:
            raise OptionError(f"{{rank}} is the share of each layer's multiply-adds kept, in (0, 1), got {spec.rank}")

    def check_options(self, options, runtime):
        if options.rank is None:
            return
        if options.wbits is None and options.method != "exact":
            raise OptionError(f"{{rank}} is solved in closed form; {{method}} {options.method} does not apply")
        if options.wbits is not None and options.method not in ("exact", "gptq", "rtn"):
            raise OptionError(f"{{rank}} {{wbits}} quantizes the factors with exact, gptq or rtn, not {options.method}")

    def unfit(self, layer, spec):
        return f"grouped Conv ({layer.groups} groups): no low-rank" if layer.groups > 1 else None

    def without(self, spec):
        return {"rank": None, "wbits": None}  # its wbits are the factors'

    def exact_passes(self, options) -> float:
        return float(options.wbits is not None and options.quant_method == "exact")  # the factors' OBQ

    def solve(self, W, H, spec) -> Fit:
        rank = solver.rank_for(*W.shape, spec.rank)
        if spec.wbits is None:
            r = solver.low_rank(W, H, [rank])[0]
            return Fit(r.weight, r.loss, {self.key: Factors(*r.factors)})
        r = solver.quantized_low_rank(W, H, rank, spec.wbits, spec.symmetric, spec.quant_method, spec.damp)
        return Fit(r.weight, r.loss, {self.key: Factors(*r.factors, tuple(f.grid for f in r.factor_results))})

    def scaled(self, part, ratio):
        return Factors(rows_scaled(part.a, ratio), part.b,
                       None if part.grids is None else (part.grids[0].scaled(ratio), part.grids[1]))

    def note(self, parts, weight):
        return f"rank {parts[0].rank}"

    def to_arrays(self, parts, arrays, meta):
        for g, f in enumerate(parts):
            arrays[f"factor_a{g}"], arrays[f"factor_b{g}"] = f.a, f.b
        meta.update(groups=len(parts), low_rank=True)
        for g, f in enumerate(parts):
            for which, grid in zip("ab", f.grids or ()):
                arrays[f"factor_{which}_scale{g}"], arrays[f"factor_{which}_zero{g}"] = grid.scale, grid.zero
        if parts[0].grids:
            g = parts[0].grids[0]
            meta.update(qmin=g.qmin, qmax=g.qmax, bits=g.bits, symmetric=g.symmetric)

    def from_arrays(self, arrays, meta):
        if not meta.get("low_rank"):
            return None
        quantized = "factor_a_scale0" in arrays
        return [Factors(arrays[f"factor_a{g}"], arrays[f"factor_b{g}"],
                        tuple(uniform_grid(arrays[f"factor_{w}_scale{g}"], arrays[f"factor_{w}_zero{g}"], meta)
                              for w in "ab") if quantized else None)
                for g in range(meta["groups"])]

    def opset(self, layer, parts, options):
        return storage_opset(options.wbits) if parts[0].grids is not None else None

    def export(self, model, items, ctx):
        for layer, s, opt in items:
            f = s.parts[self.key][0]  # ungrouped layers only
            store_low_rank(model, layer, f.a, f.b, None if f.grids is None else (*f.grids, opt.wbits, opt.symmetric))

    def label(self, layer, parts, options, ctx):
        return f"low-rank, rank {parts[0].rank}" + (f", int{options.wbits} factors" if parts[0].grids else "")

    def density(self, parts, size):
        return None if parts is None else sum(f.a.size + f.b.size for f in parts) / size
