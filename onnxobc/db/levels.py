"""Compression levels with canonical names, and the level set each runtime and budget uses.

A name is "dense", or a sparsity part and/or a quantization part joined by "+":
    s0.500        unstructured sparsity (the paper's grid s = 1 − 0.9^i, up to 0.99)
    2:4           N:M sparsity along input channels
    b4-0.700      sparsity in blocks of 4 input channels (up to 0.95)
    w8, w4, …     weight-only quantization to b bits (per output channel, symmetric)
    w8a8          int8 weights and int8 activations
    w4+o0.010     4-bit weights plus a sparse float part keeping 1 % of the weights (outliers)
    w2+r0.050     2-bit weights plus a low-rank part costing 5 % of the layer's multiply-adds
                  (also s0.900+r0.050: sparse + low-rank, and w4+o0.010+r0.050: all three)
e.g. "2:4+w8a8", "s0.500+w4", "b4-0.800+w8a8". Two kinds stand alone:
    lr0.500       low-rank, two factors keeping that share of the layer's multiply-adds;
                  lr0.500+w4 with both factors quantized to 4 bits
    cb16, cb16-row, binary, ternary
                  a fitted codebook of 16 values per layer (per output channel), or {−c, c} /
                  {−c, 0, c} per output channel
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..solver import sparsity_grid


@dataclass(frozen=True)
class Level:
    sparsity: float | None = None
    nm: tuple | None = None
    block4: float | None = None
    wbits: int | None = None
    abits: int | None = None
    rank: float | None = None
    codebook: str | None = None  # as pipeline.codebook_kind reads it
    outliers: float | None = None
    plus_rank: float | None = None

    @property
    def name(self) -> str:
        if self.rank is not None:
            return f"lr{self.rank:.3f}" + (f"+w{self.wbits}" if self.wbits is not None else "")
        if self.codebook is not None:
            return self.codebook if self.codebook in ("binary", "ternary") else f"cb{self.codebook}"
        parts = []
        if self.sparsity is not None:
            parts.append(f"s{self.sparsity:.3f}")
        if self.nm is not None:
            parts.append(f"{self.nm[0]}:{self.nm[1]}")
        if self.block4 is not None:
            parts.append(f"b4-{self.block4:.3f}")
        if self.wbits is not None:
            parts.append(f"w{self.wbits}" + (f"a{self.abits}" if self.abits else ""))
        if self.outliers is not None:
            parts.append(f"o{self.outliers:.3f}")
        if self.plus_rank is not None:
            parts.append(f"r{self.plus_rank:.3f}")
        return "+".join(parts) or "dense"

    @property
    def dense(self) -> bool:
        return self.name == "dense"

    def options(self) -> dict:
        """The pipeline Options fields this level sets."""
        return {"sparsity": self.sparsity, "nm": self.nm, "block4": self.block4, "wbits": self.wbits,
                "abits": self.abits, "rank": self.rank, "codebook": self.codebook, "outliers": self.outliers,
                "plus_rank": self.plus_rank}


_ALONE = re.compile(r"^(?:lr(?P<r>0\.\d+)(?:\+w(?P<w>\d))?|cb(?P<k>\d+)(?P<row>-row)?|binary|ternary)$")
_PART = re.compile(r"^(?:s(?P<s>0\.\d+)|(?P<n>\d+):(?P<m>\d+)|b4-(?P<b>0\.\d+)|w(?P<w>\d)(?:a(?P<a>8))?"
                   r"|o(?P<o>0\.\d+)|r(?P<pr>0\.\d+))$")


def parse(name: str) -> Level:
    """The Level named `name` (see the module doc); ValueError for anything else."""
    if name == "dense":
        return Level()
    alone = _ALONE.match(name)
    if alone:
        level = (Level(rank=round(float(alone["r"]), 3), wbits=int(alone["w"]) if alone["w"] else None) if alone["r"] else
                 Level(codebook=f"{int(alone['k'])}{alone['row'] or ''}") if alone["k"] else Level(codebook=name))
        if alone["k"] and not 2 <= int(alone["k"]) <= 256:
            raise ValueError(f"level {name!r}: a codebook holds 2 to 256 values")
        if level.rank is not None and not 0 < level.rank < 1:
            raise ValueError(f"level {name!r}: the low-rank share must be in (0, 1)")
        if level.wbits is not None and not 2 <= level.wbits <= 8:
            raise ValueError(f"level {name!r}: weight bits must be 2 to 8")
        if level.name != name:
            raise ValueError(f"level {name!r} is not in canonical form; write {level.name!r}")
        return level
    fields: dict = {}
    for part in name.split("+"):
        m = _PART.match(part)
        if not m:
            raise ValueError(f"unknown level {name!r}: parts are s<sparsity>, N:M, b4-<sparsity>, w<bits>[a8], "
                             "o<share>, r<share>; lr<share>[+w<bits>], cb<K>[-row], binary and ternary stand alone")
        key = "quant" if m["w"] else "outliers" if m["o"] else "plus_rank" if m["pr"] else "sparse"
        if key in fields:
            raise ValueError(f"level {name!r} has two {key} parts")
        if m["s"]:
            fields[key] = {"sparsity": round(float(m["s"]), 3)}
        elif m["n"]:
            fields[key] = {"nm": (int(m["n"]), int(m["m"]))}
        elif m["b"]:
            fields[key] = {"block4": round(float(m["b"]), 3)}
        elif m["o"]:
            fields[key] = {"outliers": round(float(m["o"]), 3)}
        elif m["pr"]:
            fields[key] = {"plus_rank": round(float(m["pr"]), 3)}
        else:
            fields[key] = {"wbits": int(m["w"]), "abits": int(m["a"]) if m["a"] else None}
    level = Level(**{k: v for part in fields.values() for k, v in part.items()})
    if level.wbits is not None and not 2 <= level.wbits <= 8:
        raise ValueError(f"level {name!r}: weight bits must be 2 to 8")
    if level.nm is not None and not 0 < level.nm[0] < level.nm[1]:
        raise ValueError(f"level {name!r}: N:M needs 0 < N < M")
    if level.outliers is not None and (level.wbits is None or level.abits or "sparse" in fields
                                       or not 0 < level.outliers < 0.5):
        raise ValueError(f"level {name!r}: outliers (o<share>, share < 0.5) go with weight-only bits and no sparsity")
    if level.plus_rank is not None and (level.abits or level.nm or level.block4 or (level.wbits is None) ==
                                        (level.sparsity is None) or (level.outliers and level.wbits is None)):
        raise ValueError(f"level {name!r}: a low-rank part (r<share>) goes with weight-only bits (and outliers) or "
                         "with unstructured sparsity, not both")
    if level.abits and level.wbits not in (7, 8):
        raise ValueError(f"level {name!r}: int8 activations need 7- or 8-bit weights")
    if level.name != name:
        raise ValueError(f"level {name!r} is not in canonical form; write {level.name!r}")
    return level


def unstructured() -> list[Level]:
    return [Level(sparsity=round(s, 3)) for s in sparsity_grid()]


def blocks() -> list[Level]:
    return [Level(block4=round(s, 3)) for s in sparsity_grid() if s <= 0.95 + 1e-9] + [Level(block4=0.95)]


def low_rank_levels(shares=(0.5, 0.25)) -> list[Level]:
    return [Level(rank=s) for s in shares]


def _nearest_blocks(shares) -> list[Level]:
    return [min(blocks(), key=lambda b: abs(b.block4 - s)) for s in shares]


FITTED = [Level(codebook="16"), Level(codebook="16-row"), Level(codebook="ternary"), Level(codebook="binary")]

LATENCY_SETS = {
    # what each runtime runs faster than dense
    # int8 with 7-bit weights where the CPU lacks VNNI: its U8S8 kernels saturate with 8-bit ones
    "onnxruntime": lambda: ([Level(), Level(wbits=8 if cpu_has_vnni() else 7, abits=8), Level(wbits=4)]
                            + low_rank_levels()),
    "tensorrt": lambda: [Level(), Level(nm=(2, 4)), Level(wbits=8, abits=8), Level(nm=(2, 4), wbits=8, abits=8),
                         Level(wbits=4)] + low_rank_levels(),
    # 4-blocks from about 70 %, where DeepSparse speeds them up, in float and with int8 (QLinearConv,
    # per-tensor weights), where it gains the most; four steps of the grid keep the timing short
    "deepsparse": lambda: ([Level(), Level(wbits=8, abits=8)]
                           + [l for b in _nearest_blocks((0.7, 0.8, 0.9, 0.95))
                              for l in (b, Level(block4=b.block4, wbits=8, abits=8))]
                           + low_rank_levels()),
}


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI), where int8 dot products do not saturate."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags


def level_set(cost: str, runtime: str = "onnxruntime") -> list[Level]:
    """The levels a budget on `cost` chooses from: latency uses what `runtime` runs fast; size,
    FLOPs and BOPs use everything whose analytic cost differs."""
    if cost == "latency":
        if runtime not in LATENCY_SETS:
            raise ValueError(f"no latency levels for runtime {runtime!r}; choose one of {sorted(LATENCY_SETS)}")
        return LATENCY_SETS[runtime]()
    sparse = unstructured() + [Level(nm=(2, 4))]
    shares = low_rank_levels((0.75, 0.5, 0.25, 0.125))
    if cost == "flops":
        return [Level()] + sparse + blocks() + shares
    quant = [Level(wbits=b) for b in (8, 4, 3, 2)]
    if cost == "size":
        return ([Level()] + sparse + quant + [Level(nm=(2, 4), wbits=b) for b in (8, 4)]
                + [Level(wbits=b, outliers=0.01) for b in (4, 2)] + [Level(wbits=2, plus_rank=0.05)] + FITTED + shares
                + [Level(rank=s, wbits=4) for s in (0.5, 0.25)])
    if cost == "bops":
        return [Level()] + sparse + quant + [Level(wbits=8, abits=8), Level(nm=(2, 4), wbits=8, abits=8)] + shares
    raise ValueError(f"unknown cost {cost!r}: latency, size, flops or bops")
