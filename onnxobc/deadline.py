"""A time budget for the solves (Options.max_time): before any layer is solved, each layer's
exact solve is predicted from its shape and its families' exact passes at this machine's
measured rate (solver/cost.py); while the prediction exceeds the budget, the layer that would
take longest is given the fast methods instead (GPTQ for quantizing, SparseGPT for pruning:
seconds where the exact ones take minutes), until the rest fits."""

from __future__ import annotations

import dataclasses

from . import families
from .errors import OptionError
from .progress import duration
from .solver import cost

FAST = "gptq"  # GPTQ where the exact method quantizes, SparseGPT where it prunes
SLOWEST = 2e-7  # seconds per unit of exact work no machine is slower than (this one: about 1e-8): below it,
#                nothing is timed


@dataclasses.dataclass
class Allotment:
    """The options each layer is solved with, and what the budget decided."""

    settings: dict  # weight → Options (empty where the caller makes them)
    fast: list  # weights given the fast methods, the longest first
    exact_seconds: dict  # weight → predicted seconds of its exact solve (empty when nothing was predicted)
    max_time: float | None

    def report(self) -> dict:
        kept = sum(s for w, s in self.exact_seconds.items() if w not in self.fast)
        return {"max_time": self.max_time, "predicted_exact_seconds": sum(self.exact_seconds.values()),
                "predicted_seconds_kept_exact": kept, "fast_method_layers": self.fast,
                "fast_method": FAST}


def allot(layers, options) -> Allotment:
    """Which layers `options.max_time` affords the exact solvers (all of them without a budget,
    or when the method is not exact)."""
    passes = families.exact_passes(options)
    fast = affordable({l.weight: cost.exact_work(l.rows, l.cols, l.groups, passes) for l in layers}, options)
    return dataclasses.replace(fast, settings={l.weight: fast_options(options) if l.weight in fast.fast else options
                                               for l in layers})


def affordable(work: dict, options) -> Allotment:
    """The Allotment (settings left empty) of layers whose exact solves take `work` (weight →
    units, solver/cost.py) under `options.max_time`."""
    if options.max_time is None or not any(work.values()) or sum(work.values()) * SLOWEST <= options.max_time:
        return Allotment({}, [], {}, options.max_time)
    rate = cost.seconds_per_work(options.device)
    seconds = {w: v * rate for w, v in work.items()}
    fast, left = [], sum(seconds.values())
    for w in sorted(seconds, key=seconds.get, reverse=True):
        if left <= options.max_time:
            break
        fast.append(w)
        left -= seconds[w]
    return Allotment({}, fast, seconds, options.max_time)


def fast_options(options):
    """`options` with the fast methods, where its families take them (else as they are)."""
    quick = dataclasses.replace(options, method=FAST)
    try:
        for f in families.present(quick):
            f.check_options(quick, quick.target)
    except OptionError:
        return options
    return quick


def mark(row: dict, allotment: Allotment, weight: str) -> None:
    """Add to a summary row the note of a layer the budget gave the fast methods."""
    note = (f"{FAST} (SparseGPT for pruning) instead of exact: the time budget did not afford its predicted "
            f"{duration(allotment.exact_seconds[weight])}")
    row["note"] = "; ".join(n for n in (row["note"], note) if n)
