"""Pruning to zeros in a dense weight: unstructured (ExactOBS, many levels from one greedy pass),
N:M along input channels, and blocks of 4 input channels. The zeros are stored as a sparse
initializer where that is smaller; they speed up only runtimes with sparse kernels."""

from __future__ import annotations

from .. import solver
from ..errors import OptionError
from ..solver import sparsity_grid
from .base import Family, Flag, SparsePart


def _share(value: float, field: str) -> None:
    if not 0 < value < 1:
        raise OptionError(f"{{{field}}} must be in (0, 1), got {value}")


class Sparsity(SparsePart, Family):
    fields = ("sparsity",)
    flags = (Flag("sparsity", "--sparsity", "unstructured sparsity per layer, e.g. 0.5"),)
    syntax = {"sparsity": "s<sparsity>"}
    role = "prune"
    part = r"s(?P<s>0\.\d+)"
    curves = {"unstructured sparsity": ["s0.500", "s0.750", "s0.900"]}
    one_pass = True  # every sparsity from one greedy pass

    @property
    def budget_levels(self):
        grid = [f"s{s:.3f}" for s in self.grid()]
        return {"size": grid, "flops": grid, "bops": grid}

    def name(self, spec):
        return f"s{spec.sparsity:.3f}"

    def parse(self, m):
        return {"sparsity": round(float(m["s"]), 3)}

    def check(self, spec):
        if spec.sparsity is not None:
            _share(spec.sparsity, "sparsity")

    def exact_passes(self, options) -> float:
        return float(options.prune_method == "exact")

    def prune(self, W, H, spec):
        return self.prune_levels(W, H, [spec.sparsity], spec)[0]

    def prune_levels(self, W, H, values, spec):
        return solver.prune_unstructured(W, H, values, method=spec.prune_method, device=spec.device)

    # the sparse part of sparse + low-rank: the weight initializer itself
    def addend(self, W, spec):
        return solver.sparse_part(1 - spec.sparsity, spec.prune_method)

    def initializer(self, layer, parts):
        """The layer's float weight as written: the sparse part (a low-rank part is added to it)."""
        return layer.weight_from(parts)

    def label(self, layer, parts, options, ctx):
        return "sparse"

    @staticmethod
    def grid() -> list:
        """The unstructured levels of the budgets: the paper's s = 1 − 0.9^i up to 0.99."""
        return [round(s, 3) for s in sparsity_grid()]


class NM(Family):
    fields = ("nm",)
    flags = (Flag("nm", "--nm", "N:M sparsity along input channels, e.g. 2:4", type=lambda t: NM.pair(t),
                  metavar="N:M"),)
    syntax = {"nm": "N:M"}
    role = "prune"
    part = r"(?P<n>\d+):(?P<m>\d+)"
    budget_levels = {"size": ["2:4", "2:4+w8", "2:4+w4"], "flops": ["2:4"], "bops": ["2:4", "2:4+w8a8"]}

    @staticmethod
    def pair(text) -> tuple:
        try:
            n, m = (int(v) for v in str(text).split(":"))
        except ValueError:
            raise OptionError(f"{{nm}} takes N:M such as 2:4, got {text!r}") from None
        return n, m

    def name(self, spec):
        return f"{spec.nm[0]}:{spec.nm[1]}"

    def parse(self, m):
        return {"nm": (int(m["n"]), int(m["m"]))}

    def check(self, spec):
        if spec.nm is not None and not 0 < spec.nm[0] < spec.nm[1]:
            raise OptionError(f"{{nm}} needs 0 < N < M, got {spec.nm[0]}:{spec.nm[1]}")

    def unfit(self, layer, spec):
        if layer.input_channels % spec.nm[1]:
            return f"{layer.input_channels} input channels are not divisible by {spec.nm[1]}: no N:M"
        return None

    def exact_passes(self, options) -> float:
        return float(options.prune_method == "exact")

    def prune(self, W, H, spec):
        return solver.prune_nm(W, H, *spec.nm, method=spec.prune_method, device=spec.device)


class Block4(Family):
    fields = ("block4",)
    flags = (Flag("block4", "--block4", "sparsity in blocks of 4 consecutive input channels (DeepSparse's pattern), "
                                        "e.g. 0.8", metavar="SPARSITY"),)
    syntax = {"block4": "b4-<sparsity>"}
    role = "prune"
    part = r"b4-(?P<b>0\.\d+)"
    one_pass = True

    @property
    def budget_levels(self):
        return {"flops": [f"b4-{s:.3f}" for s in self.grid()]}

    def name(self, spec):
        return f"b4-{spec.block4:.3f}"

    def parse(self, m):
        return {"block4": round(float(m["b"]), 3)}

    def check(self, spec):
        if spec.block4 is not None:
            _share(spec.block4, "block4")

    def check_options(self, options, runtime):
        if options.block4 is not None and options.prune_method == "sparsegpt":
            raise OptionError(f"{{block4}} is solved by exact or magnitude (with rtn when quantizing), not "
                              f"{options.method}")

    def unfit(self, layer, spec):
        if layer.input_channels % 4:
            return f"{layer.input_channels} input channels are not divisible by 4: no 4-blocks"
        return None

    def exact_passes(self, options) -> float:
        return float(options.prune_method == "exact")

    def prune(self, W, H, spec):
        return self.prune_levels(W, H, [spec.block4], spec)[0]

    def prune_levels(self, W, H, values, spec):
        return solver.prune_blocks(W, H, values, block=4, method=spec.prune_method, device=spec.device)

    @staticmethod
    def grid() -> list:
        """The 4-block levels of the budgets: the unstructured grid up to 0.95, and 0.95."""
        return [round(s, 3) for s in sparsity_grid() if s <= 0.95 + 1e-9] + [0.95]
