"""What every compression family provides (Family), and the pieces of a solved layer they share."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np



@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line option of a family: its field, flag, value type and help."""

    field: str
    flag: str
    help: str
    type: Callable = float
    metavar: str | None = None


@dataclasses.dataclass
class Coded:
    """A part stored as integer codes on a grid (a UniformGrid, or a ValueGrid for codebooks)."""

    codes: np.ndarray
    grid: object


@dataclasses.dataclass
class Factors:
    """A low-rank part A B (A: rows × r, B: r × cols), with a grid per factor when quantized."""

    a: np.ndarray
    b: np.ndarray
    grids: tuple | None = None  # (grid of A, grid of B)

    @property
    def rank(self) -> int:
        return self.a.shape[1]


@dataclasses.dataclass
class Fit:
    """One group's matrix solved: Ŵ, its layer loss, and each family's part of it (family key →
    what that family keeps of the solution, e.g. a grid, factors, a sparse part)."""

    weight: np.ndarray
    loss: float
    parts: dict = dataclasses.field(default_factory=dict)


def rows_scaled(M, ratio) -> np.ndarray:
    """Every row of `M` multiplied by `ratio[row]`, in float32."""
    return (M * ratio[:, None]).astype(np.float32)


class Family:
    """One compression family. Subclasses set the attributes and override what their role needs.

    Roles: "prune" (a mask, then the quantizing family if any runs on the survivors), "quantize"
    (a grid), "alone" (a compression of its own, e.g. low-rank), "addend" (a part added to a
    quantized or sparse one, fitted in turns with it), "structured" (spans layers: applied by its
    own stage, channels.py, before the others run on the smaller model)."""

    fields: tuple = ()  # the Options and Level fields it owns; the first is its key and switch
    flags: tuple = ()  # Flag per field, for the command line
    syntax: dict = {}  # field → how a level name writes it (for messages about levels)
    role: str = ""
    allowed: tuple = ()  # role "alone": the other fields that may come with it
    alone_note = ""  # role "alone": what those fields mean with it
    part: str = ""  # regex (named groups) of its part of a level name
    curves: dict = {}  # trade-off curves: label → level names
    budget_levels: dict = {}  # the levels it offers each budget by default: cost ("size", "flops", "bops") → names
    float_weight = True  # the layer's weight stays a float initializer when written (else codes)

    @property
    def key(self) -> str:
        return self.fields[0]

    def present(self, spec) -> bool:
        return getattr(spec, self.key) is not None

    # level names
    def name(self, spec) -> str:
        """Its part of a level name."""
        raise NotImplementedError

    def parse(self, match) -> dict:
        """The fields a matched level-name part sets."""
        raise NotImplementedError

    # options
    def check(self, spec) -> None:
        """OptionError on a bad value or combination (the family fields of `spec` alone: a Level
        or Options)."""

    def check_options(self, options, runtime) -> None:
        """OptionError on a method, form or runtime that does not go with it (Options only)."""

    def unfit(self, layer, spec) -> str | None:
        """Why it does not apply to `layer` (the layer then stays without it); None when it does."""
        return None

    def needs_ranges(self, spec) -> bool:
        """Whether its form needs the calibration ranges of activations (int8 activations)."""
        return False

    def level_options(self, level, used: list, runtime) -> dict:
        """Options it sets for writing `level` (whose families are `used`) on `runtime`, beyond
        the level's fields."""
        return {}

    def bits(self, spec) -> tuple | None:
        """(weight bits, activation bits) for bit-operations, where it sets them."""
        return None

    def without(self, spec) -> dict:
        """The fields to clear to drop it."""
        return {self.key: None}

    def exact_passes(self, options) -> float:
        """Exact passes (OBQ or ExactOBS over every row, solver/cost.py) its solve makes with
        `options`' method: what the time budget predicts from."""
        return 0.0


    # solving (per role)
    def prune(self, W, H, spec):
        raise NotImplementedError

    def addend(self, W, spec):
        """A solver.additive Part for it."""
        raise NotImplementedError

    def take(self, result):
        """Its part from the additive solve's Result for it."""
        raise NotImplementedError

    def contribution(self, part) -> np.ndarray:
        """What an addend adds to Ŵ (float64)."""
        raise NotImplementedError

    def scaled(self, part, ratio):
        """Its part with every output channel multiplied by `ratio` (variance correction)."""
        return rows_scaled(part, ratio)

    def finish(self, part, rest: np.ndarray):
        """Its part as stored, given Ŵ less the addends (`rest`, float64)."""
        return part

    def note(self, parts: list, weight: np.ndarray) -> str | None:
        """What the summary says of it (parts: one per group)."""
        return None

    # the database
    def to_arrays(self, parts: list, arrays: dict, meta: dict) -> None:
        """Store its parts (one per group) into the entry's arrays and meta."""

    def from_arrays(self, arrays: dict, meta: dict) -> list | None:
        """Its parts from a stored entry, or None when the entry has none."""
        return None

    # export
    def opset(self, layer, parts: list, options) -> int | None:
        """The opset its written form needs."""
        return None

    def export(self, model, items: list, ctx) -> None:
        """Write its parts into `model` in place; items: (layer, Solved, Options) of the layers
        that have them. `ctx` carries what later steps need (scales, sparse parts, MatMulNBits)."""

    def label(self, layer, parts: list, options, ctx) -> str | None:
        """How the layer is stored, when this family decides it."""
        return None

    def suffix(self, parts: list) -> str:
        """What an addend adds to the storage label."""
        return ""

    def density(self, parts: list | None, size: int) -> float | None:
        """The share of multiply-adds kept, where it is not the share of nonzero weights."""
        return None


class GridPart:
    """For a family whose part is a grid (uniform, or fitted values): stored as the codes of Ŵ
    (less any addends) on it."""

    def scaled(self, part, ratio):
        return part.scaled(ratio)

    def finish(self, part, rest):
        return Coded(part.codes(rest), part)


class SparsePart:
    """For a family whose part is a sparse float matrix per group (stored as sparse0, sparse1, …)."""

    def take(self, result):
        return result.weight

    def to_arrays(self, parts, arrays, meta):
        for g, part in enumerate(parts):
            arrays[f"sparse{g}"] = part
        meta["groups"] = len(parts)

    def from_arrays(self, arrays, meta):
        return [arrays[f"sparse{g}"] for g in range(meta["groups"])] if "sparse0" in arrays else None
