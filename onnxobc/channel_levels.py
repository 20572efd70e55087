"""Channel removal as levels of a speedup budget. The channel groups and attention blocks that can
be cut (channels.removable_groups), taken so that no layer is in two (a layer narrowed from both
sides would need two shares at once), are the budget's units: a unit may lose a share of its
channels, neurons or heads (as channels.removed_count rounds it), and its layers then take their
own levels at the smaller shapes.

Costs are known before anything is solved, as reach.py knows the levels': the model is cut at each
share with stand-in cuts (the last channels dropped), each narrowed layer is timed alone at every
level, and the cut models are timed whole beside the others. A cut saves more inside the model than
its layers alone (fewer heads' attention scores and softmax, fewer neurons' activations): that
share of the whole-model saving over the layers' summed savings scales them, as a level's in-model
factor scales its own (costs.in_model_factors).

The loss of a cut is the model's calibration loss with that unit alone cut by structured ExactOBS
(channels.Removal: one greedy pass gives every share); a narrowed layer's level adds the loss the
layer has at that level at full width. The DP takes each unit as one layer whose options are the
Pareto front of its shares and its layers' levels (dp.combine)."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import families
from .channels import Removal, apply_cuts, removable_groups, removed_count
from .db.levels import Level
from .dp import combine, pareto
from .errors import OptionError
from .fidelity import LossProbe
from .graph.layers import discover, weight_array
from .solve import Solved, dead_inputs, summary_row

DEFAULT_SHARES = (0.125, 0.25, 0.375, 0.5)


@dataclasses.dataclass
class Unit:
    """A channel group the budget may cut, and the channels each share removes from it."""

    group: object  # graph.coupling.LayerGroup or graph.heads.HeadGroup
    counts: dict  # share → channels removed (shares that remove no more than a smaller one are left out)


def units(prep, shares) -> list:
    """The groups of `prep`'s layers that can be cut, no layer in two of them (the first taken)."""
    weights = {l.weight for l in prep.layers}
    taken, out = set(), []
    for g in removable_groups(prep.model, prep.layers):
        members = set(g.members)
        if g.blocked or not members <= weights or members & taken:
            continue
        counts = {}
        for s in sorted(shares):
            k = removed_count(g.channels, s, g.align)
            if k >= 1 and k not in counts.values():
                counts[s] = k
        if counts:
            out.append(Unit(g, counts))
            taken |= members
    return out


def narrowed(prep, model, hessians: dict | None = None):
    """`prep` with `model` (a cut of its model, its layers' names kept) and its layers found again."""
    found = {l.weight: l for l in discover(model)[0]}
    return dataclasses.replace(prep, model=model, layers=[found[l.weight] for l in prep.layers],
                               hessians=prep.hessians if hessians is None else hessians)


def with_share(level: Level, share: float) -> Level | None:
    """`level` on a layer of a unit cut at `share`, or None where its families do not combine
    with channel removal."""
    combined = dataclasses.replace(level, channels=share)
    try:
        families.check(combined)
    except OptionError:
        return None
    return combined


def uniform_name(share, level: Level) -> str | None:
    """The name of the whole model with every layer at `level` and, with a `share`, every unit cut
    by it ("c0.250+w8a8"), as reach.py times it; None where the level does not combine with a cut."""
    if share is None:
        return level.name
    combined = with_share(level, share)
    return None if combined is None else combined.name


@dataclasses.dataclass
class ChannelLevels:
    """The units of a model, what each costs at every share, and (after `measure_losses`) what
    each share loses."""

    units: list
    seconds: dict  # share → weight → {Level: seconds in the model} of each member narrowed at that share
    factors: dict  # share → how much more (or less) a cut saves in the model than its layers alone
    losses: dict = dataclasses.field(default_factory=dict)  # unit index → {share: calibration loss}
    removals: dict = dataclasses.field(default_factory=dict)  # unit index → channels.Removal

    def fastest(self, per_layer: dict) -> dict:
        """Unit index → its least time (its members at their fastest levels, at the share that is
        fastest), given `per_layer` (weight → {Level: seconds in the model}) at full width."""
        out = {}
        for i, u in enumerate(self.units):
            best = sum(min(per_layer[w].values()) for w in u.group.members)
            for s in u.counts:
                best = min(best, sum(min(self.seconds[s][w].values()) for w in u.group.members))
            out[i] = best
        return out

    def useful(self, share: float, weight: str) -> list:
        """The levels of a member narrowed at `share` that are faster than it dense."""
        s = self.seconds[share][weight]
        return [lv for lv, v in s.items() if lv.dense or v < s[Level()]]

    def measure_losses(self, prep, options, progress=None) -> None:
        """Each unit's loss at each share: the model's calibration loss with only that unit cut
        (the consumers' columns zero, the rest updated, their mean shift folded in). Units a
        consumer of which saw only zero inputs are left uncut."""
        progress = progress or (lambda *a: None)
        probe = LossProbe(prep, options)
        layers = {l.weight: l for l in prep.layers}
        for i, u in enumerate(self.units):
            if any(dead_inputs(prep.hessians[c.weight]) for c in u.group.consumers):
                continue
            removal = Removal(prep, u.group, max(u.counts.values()), options.damp)
            self.removals[i] = removal
            self.losses[i] = {}
            for s, k in u.counts.items():
                cut = removal.cut(k)
                shifts = cut.shifts if options.bias_correction else {}
                self.losses[i][s] = probe.loss_of([(layers[w], Solved(cut.full[w], {}, shifts.get(w)))
                                                   for w in cut.full])
            progress("channels", i + 1, len(self.units), f"{u.group.unit} of {u.group.producer}: each share's loss")

    def options(self, i: int, table_levels: dict, table_losses: dict, table_costs: dict) -> list:
        """Unit `i`'s options for the DP: (cost, loss, {weight: Level}, the share in each Level) on
        the Pareto front of its shares (0: uncut) and its members' levels. `table_*`: weight → the member's levels,
        their losses and costs at full width (the cost table's)."""
        members = self.units[i].group.members
        out = []
        for s in [0.0] + list(self.losses.get(i, {})):
            choices, lists = [], []
            for w in members:
                if s == 0.0:
                    pairs = list(zip(table_levels[w], zip(table_costs[w], table_losses[w])))
                else:
                    useful = self.useful(s, w)
                    pairs = [(lv, (self.seconds[s][w][lv], e)) for lv, e in zip(table_levels[w], table_losses[w])
                             if lv in useful and with_share(lv, s) is not None]
                choices.append([lv for lv, _ in pairs])
                lists.append([p for _, p in pairs])
            cut_loss = self.losses[i][s] if s else 0.0
            for cost, loss, picks in combine(lists):
                levels = {w: c[k] if not s else with_share(c[k], s) for w, c, k in zip(members, choices, picks)}
                out.append((cost, loss + cut_loss, levels))
        return pareto(out)

    def cut(self, prep, plan: dict, options) -> tuple:
        """(`prep` with the units cut at the shares `plan` (weight → Level) gives their members,
        each narrowed member's Hessians restricted to its inputs left; {weight: (unit, share,
        channels kept, the cut's loss)} of the members)."""
        cuts, members = [], {}
        for i, u in enumerate(self.units):
            shares = {plan[w].channels for w in u.group.members}
            if shares == {None}:
                continue
            if len(shares) > 1 or i not in self.removals:
                raise ValueError(f"the plan cuts the layers of the {u.group.unit} of {u.group.producer} unevenly "
                                 f"({sorted(map(str, shares))}), or cuts a group that cannot be cut")
            (s,) = shares
            cut = self.removals[i].cut(u.counts[s])
            cuts.append(cut)
            members.update({w: (u, s, len(cut.keep), self.losses[i][s]) for w in u.group.members})
        model, _ = apply_cuts(prep.model, prep.layers, cuts, options.bias_correction)
        hessians = dict(prep.hessians)
        layers = {l.weight: l for l in prep.layers}
        for cut in cuts:
            for c in cut.group.consumers:
                cols = np.sort(layers[c.weight].kind.input_columns(layers[c.weight], c.per)[cut.keep].ravel())
                hessians[c.weight] = [acc.restricted(cols) for acc in prep.hessians[c.weight]]
            for w in cut.group.members:
                if layers[w].groups > 1:  # a depthwise Conv: one Hessian per channel
                    hessians[w] = [prep.hessians[w][k] for k in cut.keep]
        return narrowed(prep, model, hessians), members


def member_row(prep, weight: str, solved: Solved | None, member: tuple) -> dict:
    """The summary row of a layer of a cut unit, `solved` at its own level (None: left dense)."""
    unit, share, kept, _ = member
    layer = next(l for l in prep.layers if l.weight == weight)
    row = dict(solved.row) if solved is not None else summary_row(layer, weight_array(prep.model, weight))
    note = f"{kept} of {unit.group.channels} {unit.group.unit} of {unit.group.producer} kept (cut by {share})"
    row["note"] = "; ".join(n for n in (note, row["note"] if solved is not None else "") if n)
    row.update(applied=True, storage=row.get("storage", "float32") + ", smaller")
    return row
