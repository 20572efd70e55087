"""Compression levels: one setting of the family fields with a canonical name, and the level set
each budget chooses from.

A name is "dense", or the families' parts joined by "+" in registry order (families/):
    s0.500        unstructured sparsity (the paper's grid s = 1 − 0.9^i, up to 0.99)
    2:4           N:M sparsity along input channels
    b4-0.700      sparsity in blocks of 4 input channels (up to 0.95)
    lr0.500       low-rank, two factors keeping that share of the layer's multiply-adds
                  (lr0.500+w4: both factors quantized to 4 bits)
    cb16, cb16-row, binary, ternary
                  a fitted codebook of 16 values per layer (per output channel), or {−c, c} /
                  {−c, 0, c} per output channel
    w8, w4, …     weight-only quantization to b bits (per output channel, symmetric)
    w8a8          int8 weights and int8 activations
    o0.010        with weight bits: a sparse float part keeping 1 % of the weights (outliers)
    r0.050        with weight bits or sparsity: a low-rank part costing 5 % of the multiply-adds
e.g. "2:4+w8a8", "s0.500+w4", "b4-0.800+w8a8", "w4+o0.010+r0.050", "s0.900+r0.050".
"""

from __future__ import annotations

import dataclasses

from .. import families, runtimes
from ..errors import OptionError


@dataclasses.dataclass(frozen=True)
class Level(families.Spec):
    @property
    def name(self) -> str:
        return families.level_name(self)

    @property
    def dense(self) -> bool:
        return not families.present(self)

    def per_layer(self) -> Level:
        """This level without the families that span layers (channel removal): what each layer
        itself is solved and written at."""
        return dataclasses.replace(self, **families.per_layer(self))

    def fields(self) -> dict:
        """The family fields this level sets (every one, None where unused)."""
        return {f: getattr(self, f) for f in families.FIELDS}


def parse(name: str) -> Level:
    """The Level named `name` (see the module doc); ValueError for anything else."""
    level = Level(**families.level_fields(name))
    try:
        families.check(level)
    except OptionError as e:
        raise ValueError(f"level {name!r}: {e.worded(families.SYNTAX)}") from None
    if level.name != name:
        raise ValueError(f"level {name!r} is not in canonical form; write {level.name!r}")
    return level


def check_storable(levels) -> None:
    """An OptionError for levels the database cannot hold: those of families that span layers."""
    structured = [lv.name for lv in levels if families.of_role(lv, "structured")]
    if structured:
        raise OptionError(f"levels {structured}: channel removal spans layers, and the database holds layers alone; "
                          "compress with {speedup} and tradeoff take channel levels, {channels} cuts by one share")


def split_channels(levels: list, why: str) -> tuple:
    """(the levels solved layer by layer, the channel levels: they span layers); an OptionError,
    ending with `why`, for a channel level that names more than its share."""
    cut = [lv for lv in levels if lv.channels is not None]
    mixed = [lv.name for lv in cut if lv != Level(channels=lv.channels)]
    if mixed:
        raise OptionError(f"levels {mixed}: a channel level names the share alone (c0.250): {why}")
    return [lv for lv in levels if lv.channels is None], cut


def parse_all(names) -> list | None:
    return [parse(n) for n in names] if names else None


def level_set(cost: str, runtime: str = "onnxruntime") -> list:
    """The levels a budget on `cost` chooses from: for latency the set of `runtime` (what it runs
    faster than dense), for size, FLOPs and BOPs what each family offers that budget."""
    if cost == "latency":
        return [parse(n) for n in runtimes.get(runtime).latency_levels()]
    if cost not in ("size", "flops", "bops"):
        raise ValueError(f"unknown cost {cost!r}: latency, size, flops or bops")
    return [Level()] + [parse(n) for n in families.budget_levels(cost)]
