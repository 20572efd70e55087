"""Uniform quantization: weights to b bits per output channel (OBQ, GPTQ or rounding), stored as
int8/int4 codes behind a DequantizeLinear or in onnxruntime's MatMulNBits; with abits 8, static
int8 activations too, in the form the target runtime fuses into int8 kernels; with abits
"dynamic", MatMuls whose activations are quantized at run time (the form of quantize_dynamic)."""

from __future__ import annotations

import numpy as np

from .. import solver
from ..errors import OptionError
from ..graph.dynamic import store_dynamic
from ..graph.qdq import matmulnbits_bits, storage_opset, store_matmulnbits, store_quantized
from ..solver import UniformGrid
from .base import Coded, Family, Flag, GridPart


class Quantize(GridPart, Family):
    fields = ("wbits", "abits")
    flags = (Flag("wbits", "--wbits", "weight bits (2-8), per output channel", type=int),
             Flag("abits", "--abits", "8: static int8 activations too (W8A8 QDQ, needs --wbits 8 or 7); dynamic: "
                                      "MatMuls quantize their activations to int8 at run time (onnxruntime's dynamic "
                                      "form, as quantize_dynamic writes; other layers keep int8 weights only)",
                  type=lambda t: Quantize.activation_bits(t), metavar="8|dynamic"))
    syntax = {"wbits": "w<bits>", "abits": "a8 or a8dyn"}
    DYNAMIC = "dynamic"
    role = "quantize"
    part = r"w(?P<w>\d)(?:a(?P<a>8)(?P<dyn>dyn)?)?"
    curves = {"uniform quantization": ["w8", "w4", "w3", "w2"]}
    budget_levels = {"size": ["w8", "w4", "w3", "w2"], "bops": ["w8", "w4", "w3", "w2", "w8a8"]}
    float_weight = False

    @staticmethod
    def activation_bits(text):
        """--abits: 8 (static) or "dynamic"."""
        if str(text) == Quantize.DYNAMIC:
            return Quantize.DYNAMIC
        try:
            return int(text)
        except ValueError:
            raise OptionError(f"{{abits}} takes 8 or dynamic, got {text!r}") from None

    def name(self, spec):
        return f"w{spec.wbits}" + ("a8dyn" if spec.abits == self.DYNAMIC else f"a{spec.abits}" if spec.abits else "")

    def parse(self, m):
        return {"wbits": int(m["w"]), "abits": self.DYNAMIC if m["dyn"] else int(m["a"]) if m["a"] else None}

    def check(self, spec):
        if spec.wbits is not None and not 2 <= spec.wbits <= 8:
            raise OptionError(f"weight bits ({{wbits}}) must be 2 to 8, got {spec.wbits}")
        if spec.abits not in (None, 8, self.DYNAMIC):
            raise OptionError(f"{{abits}} supports 8 (static int8 activations) or dynamic, got {spec.abits}")
        if spec.abits is not None and spec.wbits not in (7, 8):
            raise OptionError("int8 activations ({abits} 8) run in int8 kernels, which need int8 weights as well: "
                              "{wbits} 8 (or 7, which avoids the saturation of onnxruntime's U8S8 kernels on CPUs "
                              "without VNNI)")

    def check_options(self, options, runtime):
        if options.matmulnbits and (options.wbits is None or options.abits is not None or not runtime.matmulnbits):
            raise OptionError("{matmulnbits} writes weight-only quantized MatMuls for onnxruntime: it needs {wbits}, "
                              "and no {abits} or other {runtime}")
        if options.wbits is None:
            return
        if runtime.max_opset is not None and storage_opset(options.wbits) > runtime.max_opset:
            raise OptionError(f"{runtime.label} reads opsets up to {runtime.max_opset} and {options.wbits}-bit weights "
                              f"are stored at opset {storage_opset(options.wbits)}: use {{wbits}} 5 to 8 for "
                              f"{{runtime}} {runtime.name}")
        if options.abits == self.DYNAMIC and not options.symmetric:
            raise OptionError("{abits} dynamic reads weights with zero point 0: drop {asym}")
        if options.abits == self.DYNAMIC and not runtime.dynamic_int8:
            raise OptionError(f"{{abits}} dynamic is onnxruntime's form; {runtime.label} does not run it: use "
                              f"{{abits}} 8 for {{runtime}} {runtime.name}")
        if options.abits == 8 and runtime.int8.symmetric and not options.symmetric:
            raise OptionError(f"{runtime.label} runs symmetric int8 only: drop {{asym}} for {{runtime}} {runtime.name}")

    def unfit(self, layer, spec):
        if spec.abits == self.DYNAMIC and not layer.kind.dynamic_int8:
            return f"{layer.op} has no dynamic int8 form: left in float"
        return None

    def needs_ranges(self, spec):
        return spec.abits == 8  # static: each activation's range from the calibration data

    def level_options(self, level, used, runtime):
        """Weight-only quantized MatMuls (pruned or not) go to MatMulNBits where the runtime runs
        that kernel fastest."""
        weight_only = [f.key for f in used if f.role != "prune"] == [self.key] and not level.abits
        return {"matmulnbits": runtime.matmulnbits and weight_only}

    def bits(self, spec):
        return spec.wbits, 8 if spec.abits else 32

    # solving
    def layer_grids(self, mats: list, spec) -> list:
        """One grid per group, or Nones where each group fits its own: with the runtime's
        per-tensor int8 weights, one grid across the groups too."""
        if not spec.per_tensor:
            return [None] * len(mats)
        whole = solver.fit_uniform_grid(np.concatenate(mats), spec.wbits, spec.symmetric, per_tensor=True)
        return [whole.take(slice(g * len(M), (g + 1) * len(M))) for g, M in enumerate(mats)]

    def exact_passes(self, options) -> float:
        return float(options.quant_method == "exact")

    def quantize(self, W, H, spec, pruned=None, grid=None):
        """(Result, grid): OBQ (or the method's baseline) on W, keeping `pruned`'s zeros and
        fitting the grid to its survivors when a pruning Result is given."""
        if grid is None:
            grid = solver.fit_uniform_grid(W if pruned is None else pruned.weight, spec.wbits, spec.symmetric)
        r = solver.quantize(W, H, grid, method=spec.quant_method, mask=None if pruned is None else pruned.mask,
                            device=spec.device)
        return r, grid

    def addend(self, W, spec):
        return solver.quantized_part(spec.wbits, spec.symmetric, spec.quant_method)

    def take(self, result):
        return result.grid

    # the database
    def to_arrays(self, parts, arrays, meta):
        for g, c in enumerate(parts):
            arrays[f"codes{g}"], arrays[f"scale{g}"], arrays[f"zero{g}"] = c.codes.astype(np.int8), c.grid.scale, \
                c.grid.zero
        g = parts[0].grid
        meta.update(groups=len(parts), qmin=g.qmin, qmax=g.qmax, bits=g.bits, symmetric=g.symmetric)

    def from_arrays(self, arrays, meta):
        if "codes0" not in arrays:
            return None
        return [Coded(arrays[f"codes{g}"].astype(np.int32), uniform_grid(arrays[f"scale{g}"], arrays[f"zero{g}"], meta))
                for g in range(meta["groups"])]

    # export
    @staticmethod
    def nbits(layer, options) -> bool:
        return bool(options.matmulnbits) and layer.kind.matmulnbits

    @classmethod
    def dynamic(cls, layer, options) -> bool:
        return options.abits == cls.DYNAMIC and layer.kind.dynamic_int8

    def opset(self, layer, parts, options):
        return None if self.nbits(layer, options) else storage_opset(options.wbits)

    def export(self, model, items, ctx):
        for layer, s, opt in items:
            parts = s.parts[self.key]
            scale = np.concatenate([c.grid.scale for c in parts])
            zero = np.concatenate([c.grid.zero for c in parts])
            ctx.scales[layer.weight] = scale
            if opt.abits == 8:
                ctx.int8.setdefault(opt.runtime, []).append(layer)
            if self.dynamic(layer, opt):
                store_dynamic(model, layer, layer.weight_from([c.codes for c in parts]), scale)
            elif self.nbits(layer, opt):
                ctx.nbits.add(layer.weight)
                store_matmulnbits(model, layer, parts[0].codes, scale, zero, opt.wbits, opt.symmetric)
            else:
                store_quantized(model, layer.weight, layer.output_axis, layer.weight_from([c.codes for c in parts]),
                                scale, zero, opt.wbits, opt.symmetric)

    def label(self, layer, parts, options, ctx):
        if layer.weight in ctx.nbits:
            return f"MatMulNBits {matmulnbits_bits(options.wbits)}-bit"
        if self.dynamic(layer, options):
            return f"int{options.wbits}, dynamic int8 activations"
        return f"int{options.wbits}" + (", per-tensor" if options.per_tensor else "")


def uniform_grid(scale, zero, meta) -> UniformGrid:
    """A stored uniform grid (its integer range and bits in the entry's meta)."""
    return UniformGrid(scale, zero, meta["qmin"], meta["qmax"], meta["bits"], meta["symmetric"])
