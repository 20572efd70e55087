"""Latency of every (layer, level) on the target runtime: each layer alone, at its real input
shape and the batch size asked for, written in the level's export format, timed (warm-up, then
the median of repeats; timing.py) and cached in the database by a signature of the layer's shape
and attributes, so layers alike are timed once."""

from __future__ import annotations

from ..timing import times_alone
from .build import level_options
from .store import fingerprint


def signature(layer, input_shape) -> str:
    # "v2": the runtime's per-run overhead (an empty model's time) is subtracted
    return fingerprint("v2", layer.op, layer.weight_shape, layer.groups, layer.attrs[0], list(input_shape))


def layer_latencies(prep, layer, solved: dict, options, input_shape) -> dict:
    """{level name: seconds per run} of `layer` alone at each level of `solved` (Level →
    Solved) on the options' runtime, timed together (timing.times_alone)."""
    forms = {level.name: (s, None if level.dense else level_options(options, level)) for level, s in solved.items()}
    return times_alone(prep, layer, forms, options, input_shape)
