"""Fitted grids: a K-value codebook per layer or per output channel (Hessian-weighted k-means
and the uniform grid as starts, OBQ placement, exact value refits), binary {−c, c} and ternary
{−c, 0, c} per output channel; stored as packed indices plus the values (for size: onnxruntime
rebuilds the float weight when it loads the model)."""

from __future__ import annotations

import numpy as np

from .. import solver
from ..errors import OptionError
from ..graph.codebook import OPSET, index_bits, store_codebook
from ..solver import ValueGrid
from .base import Coded, Family, Fit, Flag, GridPart


def codebook_kind(text: str) -> tuple:
    """A codebook value → (values, kind): "16" one 16-value codebook per layer ("shared"),
    "16-row" one per output channel ("rows"), "binary" {−c, c} and "ternary" {−c, 0, c} per
    output channel ("sign")."""
    if text in ("binary", "ternary"):
        return (2 if text == "binary" else 3), "sign"
    k, _, per = str(text).partition("-")
    if not k.isdigit() or per not in ("", "row") or not 2 <= int(k) <= 256:
        raise OptionError(f"{{codebook}} takes K (2 to 256 values per layer), K-row (per output channel), binary or "
                          f"ternary, got {text!r}")
    return int(k), "rows" if per else "shared"


class Codebook(GridPart, Family):
    fields = ("codebook",)
    flags = (Flag("codebook", "--codebook", "fitted grid: a K-value codebook per layer (K-row: per output channel), "
                                            "or binary {-c, c} / ternary {-c, 0, c} per output channel; stored as "
                                            "packed indices plus the values", type=str,
                  metavar="K|K-row|binary|ternary"),)
    syntax = {"codebook": "cb<K>[-row] or binary or ternary"}
    role = "alone"
    part = r"cb(?P<k>\d+)(?P<row>-row)?|(?P<sign>binary|ternary)"
    curves = {"codebook (per layer)": ["cb16", "cb4"], "ternary / binary": ["ternary", "binary"]}
    budget_levels = {"size": ["cb16", "cb16-row", "ternary", "binary"]}
    float_weight = False

    def name(self, spec):
        return spec.codebook if spec.codebook in ("binary", "ternary") else f"cb{spec.codebook}"

    def parse(self, m):
        return {"codebook": m["sign"] or f"{int(m['k'])}{m['row'] or ''}"}

    def check(self, spec):
        if spec.codebook is not None:
            codebook_kind(spec.codebook)

    def check_options(self, options, runtime):
        if options.codebook is not None and options.method not in ("exact", "gptq", "rtn"):
            raise OptionError(f"{{codebook}} places weights with exact, gptq or rtn, not {options.method}")

    def exact_passes(self, options) -> float:
        return float(options.quant_method == "exact")

    def solve(self, W, H, spec) -> Fit:
        k, kind = codebook_kind(spec.codebook)
        if kind == "sign":
            r = solver.quantize_fitted(W, H, solver.sign_grid(W, H, ternary=k == 3), "sign", spec.quant_method)
        else:
            r = solver.codebook(W, H, k, per_row=kind == "rows", method=spec.quant_method)
        return Fit(r.weight, r.loss, {self.key: r.grid})

    def to_arrays(self, parts, arrays, meta):
        for g, c in enumerate(parts):
            arrays[f"codes{g}"], arrays[f"values{g}"] = c.codes.astype(np.uint8), c.grid.values
        meta.update(groups=len(parts), codebook=True)

    def from_arrays(self, arrays, meta):
        if not meta.get("codebook"):
            return None
        return [Coded(arrays[f"codes{g}"].astype(np.int32), ValueGrid(arrays[f"values{g}"]))
                for g in range(meta["groups"])]

    def opset(self, layer, parts, options):
        return OPSET

    def export(self, model, items, ctx):
        for layer, s, opt in items:
            parts = s.parts[self.key]
            store_codebook(model, layer, layer.weight_from([c.codes for c in parts]),
                           np.concatenate([c.grid.values for c in parts]))

    def label(self, layer, parts, options, ctx):
        k = parts[0].grid.values.shape[1]
        return f"codebook, {k} values, {index_bits(k)}-bit indices"

    def density(self, parts, size):
        return 1.0  # the weight is rebuilt in float: every multiply-add stays
