"""Channel removal as levels of a speedup budget. The channel groups and attention blocks that can
be cut are the budget's units (channel_units.py): a unit may lose a share of its
channels, neurons or heads (as channels.removed_count rounds it), and its layers then take their
own levels at the smaller shapes. Groups that share a layer (a Conv that reads one group's
channels and makes the next's, as in a MobileNet's chain of blocks) form a chain: cut whole, by
one share, its shared layers are narrowed on both sides; or its groups alone that share no layer
(the first taken), each by its own share. The DP chooses between the two per chain.

Costs are known before anything is solved, as reach.py knows the levels': the model is cut at each
share with stand-in cuts (the last channels dropped), each narrowed layer is timed alone at every
level, and the cut models are timed whole beside the others. A cut saves more inside the model than
its layers alone (fewer heads' attention scores and softmax, fewer neurons' activations): that
share of the whole-model saving over the layers' summed savings scales them, as a level's in-model
factor scales its own (costs.in_model_factors). A narrowed layer's cost is then below zero where
its cut saves more outside it than it still takes, and the DP takes such costs: on an encoder
whose attention and activations take most of the time, a target beyond what the layers alone
can give is met by cuts.

The loss of a cut is the model's calibration loss with that group alone cut by structured
ExactOBS (channels.Removal: one greedy pass gives every share), a chain's with all its groups cut;
a narrowed layer's level adds the loss the layer has at that level at full width. The DP takes
each unit as one layer whose options are the Pareto front of its shares and its layers' levels
(dp.combine)."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import families
from .channel_units import nesting, offered
from .channels import Removal
from .db.levels import Level
from .dp import combine, pareto
from .errors import OptionError
from .fidelity import LossProbe
from .graph.layers import discover, weight_array
from .recut import made
from .solve import Solved, dead_inputs, summary_row

DEFAULT_SHARES = (0.125, 0.25, 0.375, 0.5)
DEEP_SHARES = (0.625, 0.75)  # offered by default only where a speedup is beyond what cuts up to half reach: they
# cost a model most of its accuracy, and timing them costs a third more


def narrowed(prep, model, hessians: dict | None = None):
    """`prep` with `model` (a cut of its model, its layers' names kept) and its layers found again."""
    found = {l.weight: l for l in discover(model)[0]}
    return dataclasses.replace(prep, model=model, layers=[found[l.weight] for l in prep.layers],
                               hessians=prep.hessians if hessians is None else hessians)


def convex_envelope(losses: dict, removed: dict) -> dict:
    """share → loss, each at least the loss of every smaller share scaled by the channels removed
    (`removed`: share → how many): the greedy takes the cheapest channels first, so each further
    one costs at least as much as the average of those before it, and a deeper cut loses more.
    Where the probe's few held-out samples measure a deeper cut as cheap as, or cheaper than, a
    shallower one, the DP would take it for nothing, and a plan would cut further than its budget
    asks."""
    out, last = {}, None
    for share in sorted(losses):
        out[share] = losses[share] if last is None else max(losses[share], out[last] * removed[share] / removed[last])
        last = share
    return out


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
    seconds: dict  # unit index → share → weight → {Level: seconds in the model} of each member narrowed by the unit
    factors: dict  # share → "whole" / "alone" → how much more (or less) a cut saves in the model than alone
    losses: dict = dataclasses.field(default_factory=dict)  # unit index → {share: calibration loss}
    removals: dict = dataclasses.field(default_factory=dict)  # a group's producer → channels.Removal
    made: dict = dataclasses.field(default_factory=dict)  # how and what was cut → recut.made's result

    def offered(self) -> list:
        return offered(self.units)

    def _inside(self, i: int) -> tuple:
        """(the units of one group inside chain `i`, the chain's layers in none of them)."""
        inner = nesting(self.units).get(i, [])
        covered = {w for j in inner for w in self.units[j].members}
        return inner, [w for w in self.units[i].members if w not in covered]

    def fastest(self, per_layer: dict) -> dict:
        """Offered unit index → its least time (its members at their fastest levels, at the share
        that is fastest; a chain also by its groups alone), given `per_layer` (weight → {Level:
        seconds in the model}) at full width."""
        def least(i):
            u = self.units[i]
            return min([sum(min(per_layer[w].values()) for w in u.members)]
                       + [sum(min(self.seconds[i][s][w].values()) for w in u.members) for s in u.counts])

        out = {}
        for i in self.offered():
            inner, rest = self._inside(i)
            out[i] = least(i)
            if inner:
                out[i] = min(out[i], sum(least(j) for j in inner) + sum(min(per_layer[w].values()) for w in rest))
        return out

    def useful(self, i: int, share: float, weight: str) -> list:
        """The levels of a member of unit `i` narrowed at `share` that are faster than it dense."""
        s = self.seconds[i][share][weight]
        return [lv for lv, v in s.items() if lv.dense or v < s[Level()]]

    def measure_losses(self, prep, options, progress=None) -> None:
        """Each unit's loss at each share: the model's calibration loss with only that unit cut
        (the consumers' columns zero, the rest updated, their mean shift folded in; a chain's
        groups all at once, as their errors compound; the sum of its groups' where one layer reads
        two of them), bounded below by convex_envelope. Units a consumer of which saw only zero
        inputs are left uncut."""
        progress = progress or (lambda *a: None)
        probe = LossProbe(prep, options)
        layers = {l.weight: l for l in prep.layers}
        steps = {}
        for u in self.units:
            for j, g in enumerate(u.groups):
                steps[g.producer] = max([steps.get(g.producer, 0)] + [k[j] for k in u.counts.values()])

        def changed(cuts):  # the consumers' weights at full width, the removed columns zero
            out = {}
            for cut in cuts:
                shifts = cut.shifts if options.bias_correction else {}
                out.update({w: Solved(cut.full[w], {}, shifts.get(w)) for w in cut.full})
            return out

        def loss(groups, counts):
            cuts = []
            for g, k in zip(groups, counts):
                if k:
                    if g.producer not in self.removals:
                        self.removals[g.producer] = Removal(prep, g, steps[g.producer], options.damp,
                                                           options.bias_correction)
                    cuts.append(self.removals[g.producer].cut(k))
            readers = [w for cut in cuts for w in cut.full]
            if len(readers) > len(set(readers)):  # a layer reads two of the groups: their losses add up
                return sum(loss([g], [k]) for g, k in zip(groups, counts) if k)
            return probe.loss_of([(layers[w], s) for w, s in changed(cuts).items()])

        for i, u in enumerate(self.units):
            if any(dead_inputs(prep.hessians[c.weight]) for g in u.groups for c in g.consumers):
                continue
            self.losses[i] = convex_envelope({s: loss(u.groups, counts) for s, counts in u.counts.items()},
                                             {s: sum(counts) for s, counts in u.counts.items()})
            progress("channels", i + 1, len(self.units), f"{u.label}: each share's loss")

    def options(self, i: int, table_levels: dict, table_losses: dict, table_costs: dict) -> list:
        """Offered unit `i`'s options for the DP: (cost, loss, {weight: Level}, the share in each
        Level) on the Pareto front of its shares (0: uncut) and its members' levels; for a chain,
        also of its groups cut alone (nesting), each by its own share. `table_*`: weight → the
        member's levels, their losses and costs at full width (the cost table's)."""
        def full_width(w):
            return list(zip(table_levels[w], zip(table_costs[w], table_losses[w])))

        out = self._own(i, full_width)
        inner, rest = self._inside(i)
        if inner:  # the groups alone: a plan where every layer of the chain has one share is the chain's
            parts = [self._own(j, full_width) for j in inner]
            lists = [[o[:2] for o in opts] for opts in parts] + [[p for _, p in full_width(w)] for w in rest]
            for cost, loss, picks in combine(lists):
                levels = {w: lv for opts, k in zip(parts, picks) for w, lv in opts[k][2].items()}
                levels.update({w: full_width(w)[k][0] for w, k in zip(rest, picks[len(parts):])})
                shares = {lv.channels for lv in levels.values()}
                if len(shares) > 1 or shares == {None}:
                    out.append((cost, loss, levels))
        return pareto(out)

    def _own(self, i: int, full_width) -> list:
        members = self.units[i].members
        out = []
        for s in [0.0] + list(self.losses.get(i, {})):
            choices, lists = [], []
            for w in members:
                if s == 0.0:
                    pairs = full_width(w)
                else:
                    useful = self.useful(i, s, w)
                    pairs = [(lv, (self.seconds[i][s][w][lv], e)) for lv, (_, e) in full_width(w)
                             if lv in useful and with_share(lv, s) is not None]
                choices.append([lv for lv, _ in pairs])
                lists.append([p for _, p in pairs])
            cut_loss = self.losses[i][s] if s else 0.0
            for cost, loss, picks in combine(lists):
                levels = {w: c[k] if not s else with_share(c[k], s) for w, c, k in zip(members, choices, picks)}
                out.append((cost, loss + cut_loss, levels))
        return pareto(out)

    def decode(self, plan: dict) -> list:
        """(unit index, group index, share) of every group `plan` (weight → Level) cuts: a chain
        whose layers all have one share is cut whole, else its groups alone by their layers' share."""
        out = []
        for i in self.offered():
            u = self.units[i]
            shares = {plan[w].channels for w in u.members}
            if len(u.groups) > 1 and len(shares) == 1 and None not in shares and i in self.losses:
                (s,) = shares
                out += [(i, j, s) for j, k in enumerate(u.counts[s]) if k]
                continue
            inner, rest = self._inside(i)
            for j in inner if len(u.groups) > 1 else [i]:
                shares = {plan[w].channels for w in self.units[j].members}
                if shares == {None}:
                    continue
                if len(shares) > 1 or j not in self.losses or None in shares:
                    raise ValueError(f"the plan cuts the layers of the {self.units[j].label} unevenly "
                                     f"({sorted(map(str, shares))}), or cuts a group that cannot be cut")
                out.append((j, 0, shares.pop()))
            if len(u.groups) > 1 and any(plan[w].channels is not None for w in rest):
                raise ValueError(f"the plan cuts the {u.label} unevenly")
        return out

    def cut(self, prep, plan: dict, options, progress=None) -> tuple:
        """(`prep` with the units cut at the shares `plan` (weight → Level) gives their members (as
        recut.made makes cuts: with options.sequential, also wave after wave), each narrowed
        member's Hessians restricted to its inputs left; {weight: (group, share, channels kept, the
        unit's loss)} of the members)."""
        cuts, members = [], {}
        for i, j, s in self.decode(plan):
            u = self.units[i]
            g = u.groups[j]
            cut = self.removals[g.producer].cut(u.counts[s][j])
            cuts.append(cut)
            readers = {c.weight for c in g.consumers}
            for w in g.members:  # a layer between two groups of a chain is noted by the one it makes
                if w not in readers or w not in members:
                    members[w] = (g, s, len(cut.keep), self.losses[i][s])
        key = (options.sequential, options.bias_correction, options.damp,
               *sorted((c.group.producer, len(c.keep)) for c in cuts))
        if key not in self.made:  # a re-plan that cuts alike (budget._corrected) reuses the model
            self.made[key] = made(prep, cuts, options, progress)
        model, _, cuts, note = self.made[key]
        hessians = dict(prep.hessians)
        layers = {l.weight: l for l in prep.layers}
        for cut in cuts:
            for c in cut.group.consumers:
                cols = np.sort(layers[c.weight].kind.input_columns(layers[c.weight], c.per)[cut.keep].ravel())
                hessians[c.weight] = [acc.restricted(cols) for acc in prep.hessians[c.weight]]
            for w in cut.group.members:
                if layers[w].groups > 1:  # a depthwise Conv: one Hessian per channel
                    hessians[w] = [prep.hessians[w][k] for k in cut.keep]
        work = narrowed(prep, model, hessians)
        return (dataclasses.replace(work, notes=work.notes + [note]) if note else work), members


def member_row(prep, weight: str, solved: Solved | None, member: tuple) -> dict:
    """The summary row of a layer of a cut unit, `solved` at its own level (None: left dense)."""
    group, share, kept, _ = member
    layer = next(l for l in prep.layers if l.weight == weight)
    row = dict(solved.row) if solved is not None else summary_row(layer, weight_array(prep.model, weight))
    note = f"{kept} of {group.channels} {group.unit} of {group.producer} kept (cut by {share})"
    row["note"] = "; ".join(n for n in (note, row["note"] if solved is not None else "") if n)
    row.update(applied=True, storage=row.get("storage", "float32") + ", smaller")
    return row
