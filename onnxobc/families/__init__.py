"""The compression families, registered here in one tuple. A family is one object (families/base.py)
that says everything about it: its option fields and flags, its part of a level name, where it
applies, how the pure solvers fit it, how its part is stored in the database and written into
the ONNX graph (through graph/), its storage label, notes and analytic cost. The option and level
fields (Spec) come from here, and so do the trade-off curves.

The order of FAMILIES is the order of level-name parts (s0.500+w4, lr0.500+w4, w4+o0.010+r0.050),
of checks and of writing: a quantized weight is written before the parts added to it."""

from __future__ import annotations

import dataclasses
import re

from .. import solver
from ..errors import OptionError
from .addends import Outliers, PlusRank
from .base import Coded, Factors, Family, Fit, Flag
from .codebook import Codebook, codebook_kind
from .lowrank import LowRank
from .pruning import NM, Block4, Sparsity
from .quantize import Quantize
from .structured import Channels

FAMILIES = (Channels(), Sparsity(), NM(), Block4(), LowRank(), Codebook(), Quantize(), Outliers(), PlusRank())
BY_KEY = {f.key: f for f in FAMILIES}
FIELDS = tuple(field for f in FAMILIES for field in f.fields)
FLAGS = tuple(flag for f in FAMILIES for flag in f.flags)
SYNTAX = {k: v for f in FAMILIES for k, v in f.syntax.items()}
# every family field, None when the family is not used: the fields Options and Level share
Spec = dataclasses.make_dataclass("Spec", [(name, object, dataclasses.field(default=None)) for name in FIELDS],
                                  frozen=True)
Spec.__module__ = __name__  # importable by name, so Options and Levels pickle (Ray tasks)
Spec.__doc__ = f"One value per family field ({', '.join(FIELDS)}); None where the family is not used."


def present(spec) -> list:
    """The families `spec` uses, in registry order."""
    return [f for f in FAMILIES if f.present(spec)]


def of_role(spec, role: str):
    """The family of `role` that `spec` uses (the first), or None."""
    return next((f for f in present(spec) if f.role == role), None)


def compresses(spec) -> bool:
    """Whether `spec` changes weights by itself (addends and activations only add to those)."""
    return any(f.role in ("structured", "prune", "quantize", "alone") for f in present(spec))


def exact_passes(options) -> float:
    """The exact passes over every row (solver/cost.py) one group's solve makes with `options`:
    each family's (a family that stands alone solves for the others), taken solver.additive's
    rounds times when parts are added together."""
    alone = of_role(options, "alone")
    if alone is not None:
        return alone.exact_passes(options)
    passes = sum(f.exact_passes(options) for f in present(options) if f.role != "structured")
    return passes * (solver.additive_rounds if of_role(options, "addend") else 1)


def per_layer(spec) -> dict:
    """The fields that clear the families spanning layers (role "structured"): what is left is
    solved layer by layer."""
    return {k: None for f in FAMILIES if f.role == "structured" for k in f.fields}


def cleared(spec) -> dict:
    """Every family field set to None."""
    return dict.fromkeys(FIELDS)


def check(spec) -> None:
    """OptionError for bad values and combinations of the family fields of `spec`."""
    for f in present(spec):
        if f.role == "alone":
            others = [x for g in FAMILIES if g is not f for x in g.fields
                      if getattr(spec, x) is not None and x not in f.allowed]
            if getattr(spec, "matmulnbits", False):
                others.insert(others.index("abits") if "abits" in others else len(others), "matmulnbits")
            if others:
                raise OptionError(f"{{{f.key}}} is a compression of its own{f.alone_note}: drop "
                                  + ", ".join(f"{{{x}}}" for x in others))
    for f in FAMILIES:
        f.check(spec)
    pruning = [f for f in present(spec) if f.role == "prune"]
    if len(pruning) > 1:
        names = [f"{{{f.key}}}" for f in FAMILIES if f.role == "prune"]
        raise OptionError(f"{', '.join(names[:-1])} and {names[-1]} are exclusive")


def level_name(spec) -> str:
    """The canonical name of the level `spec` describes: its families' parts joined by "+"."""
    return "+".join(f.name(spec) for f in present(spec)) or "dense"


_PARTS = [(f, re.compile(f"^(?:{f.part})$")) for f in FAMILIES]


def level_fields(name: str) -> dict:
    """The fields a level name sets (the parts parsed, not yet checked); ValueError for a part no
    family reads or a family named twice."""
    if name == "dense":
        return {}
    fields, seen = {}, set()
    for part in name.split("+"):
        hit = next(((f, m) for f, rx in _PARTS if (m := rx.match(part))), None)
        if hit is None:
            raise ValueError(f"unknown level {name!r}: its parts are " + ", ".join(SYNTAX[f.key] for f in FAMILIES)
                             + ", joined by + (e.g. 2:4+w8a8, lr0.500+w4), or dense")
        family, m = hit
        if family.key in seen:
            raise ValueError(f"level {name!r} has two {SYNTAX[family.key]} parts")
        seen.add(family.key)
        fields.update(family.parse(m))
    return fields


def needs_ranges(specs) -> bool:
    """Whether writing any of `specs` needs activation ranges from the calibration data."""
    return any(f.needs_ranges(s) for s in specs for f in present(s))


def level_options(level, runtime) -> dict:
    """The options writing a budget's `level` on `runtime` takes: its fields, and what families add."""
    used = present(level)
    extra = {k: v for f in FAMILIES for k, v in f.level_options(level, used, runtime).items()}
    return {**{name: getattr(level, name) for name in FIELDS}, **extra}


def budget_levels(cost: str) -> list:
    """The level names every family offers a budget on `cost` ("size", "flops", "bops")."""
    return [name for f in FAMILIES for name in f.budget_levels.get(cost, [])]


def curves() -> dict:
    """The trade-off curves of every family: label → level names."""
    return {label: names for f in FAMILIES for label, names in f.curves.items()}


__all__ = [
    "BY_KEY", "FAMILIES", "FIELDS", "FLAGS", "SYNTAX", "budget_levels", "check", "cleared", "codebook_kind", "Coded",
    "compresses", "curves", "Factors", "Family", "Fit", "Flag", "level_fields", "level_name", "level_options",
    "needs_ranges", "of_role", "per_layer", "present", "Spec",
]
