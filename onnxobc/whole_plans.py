"""Uniform plans as candidates of a speedup budget beside the DP's: every layer at one level and,
with channel removal, every unit at one share, as reach.py timed the whole model. The DP adds
up the layers' times, each scaled by what its level saves inside the model on average; where
levels interact more than that (an int8 chain keeps its data in uint8 only while every layer in
it is int8, so a layer that is slower in int8 alone is faster inside such a chain, and one float
layer in the chain costs a dequantize and a quantize), the DP's plans can be slower than a
uniform one. A uniform plan's time is measured, not added up: where no plan of the DP's meets
the target, the budget takes the uniform plan of least loss that does, or (best effort) the
plan of least loss, uniform or the DP's, close to the fastest (budget.make_plan)."""

from __future__ import annotations

import dataclasses

from .channel_levels import with_share
from .db.levels import Level, parse


@dataclasses.dataclass
class WholePlan:
    """A uniform plan: its name (the level's, with the share: "c0.250+w8a8"), the whole model's
    seconds per batch as timed, its calibration loss (the DP's sum) and its level per layer."""

    name: str
    seconds: float
    loss: float
    levels: dict  # weight → Level


def uniform_plans(table, uniform: dict, channels=None) -> list:
    """The uniform plans that the database can write, of the whole-model times `uniform` (level
    name → seconds, "dense" the model as planned). `table`: the cost table (costs.Table); a layer
    without the level (it does not fit it) stays dense, as it was timed. A plan that cuts a unit
    whose loss was not measured (channel_levels.ChannelLevels.measure_losses leaves some uncut)
    is left out. A share cuts every unit the DP is offered, each chain whole (channel_levels.py)."""
    unit_of = {w: i for i in channels.offered() for w in channels.units[i].members} if channels else {}
    out = []
    for name, seconds in uniform.items():
        if name == "dense":
            continue
        level = parse(name)
        share, base = level.channels, level.per_layer()
        if share is not None and channels is None:
            continue
        loss, levels, cut = 0.0, {}, set()
        for layer, lvs, losses in zip(table.layers, table.levels, table.losses):
            own = base if base in lvs else Level()
            if own not in lvs:
                break
            loss += losses[lvs.index(own)]
            i = unit_of.get(layer.weight)
            if share is not None and i is not None and share in channels.units[i].counts:
                if share not in channels.losses.get(i, {}):
                    break
                if i not in cut:
                    cut.add(i)
                    loss += channels.losses[i][share]
                own = with_share(own, share)
            levels[layer.weight] = own
        else:
            out.append(WholePlan(name, seconds, loss, levels))
    return out
