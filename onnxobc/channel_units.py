"""Which channel groups a speedup budget cuts, and how: each group that can be cut
(channels.removable_groups) is a unit of its own where no group taken before holds one of its
layers, and groups that share layers (a Conv that reads one group's channels and makes the
next's) form a chain, a unit of its own whose groups alone are its alternative
(channel_levels.py prices both)."""

from __future__ import annotations

import dataclasses

from .channels import removable_groups, removed_count


@dataclasses.dataclass
class Unit:
    """Channel groups a budget cuts by one share: a group alone, or a chain of groups that share
    layers (a layer reads one group's channels and makes the next's), cut alike, so that a layer
    between two of them is narrowed on both sides."""

    groups: list  # graph.coupling.LayerGroup or graph.heads.HeadGroup, one or a chain
    counts: dict  # share → the channels each group loses (shares that remove no more than a smaller one are left out)

    @property
    def members(self) -> list:
        return list(dict.fromkeys(w for g in self.groups for w in g.members))

    @property
    def label(self) -> str:
        g = self.groups[0]
        return f"{g.unit} of {g.producer}" if len(self.groups) == 1 else \
            f"chain of {len(self.groups)} channel groups from {g.producer}"


def _unit(groups: list, shares) -> Unit | None:
    counts, seen = {}, set()
    for s in sorted(shares):
        k = tuple(removed_count(g.channels, s, g.align) for g in groups)
        if sum(k) >= 1 and k not in seen:
            counts[s] = k
            seen.add(k)
    return Unit(groups, counts) if counts else None


def units(prep, shares) -> list:
    """The groups of `prep`'s layers that can be cut as units: each alone where no group taken
    before holds one of its layers (the first taken), then each chain of two or more groups that
    share layers as one unit (the groups alone inside it are its alternative: `nesting`)."""
    weights = {l.weight for l in prep.layers}
    found = [g for g in removable_groups(prep.model, prep.layers) if not g.blocked and set(g.members) <= weights]
    taken, out = set(), []
    for g in found:
        if set(g.members) & taken:
            continue
        unit = _unit([g], shares)
        if unit is not None:
            out.append(unit)
            taken |= set(g.members)
    chains = []  # groups joined while they share a layer
    for g in found:
        shares_layer = [any(set(g.members) & set(h.members) for h in c) for c in chains]
        chains = [c for c, s in zip(chains, shares_layer) if not s] + \
            [[h for c, s in zip(chains, shares_layer) if s for h in c] + [g]]
    return out + [u for c in chains if len(c) > 1 and (u := _unit(c, shares)) is not None]


def nesting(found: list) -> dict:
    """Chain unit index → the indices of the units of one group inside it."""
    return {i: [j for j, v in enumerate(found) if len(v.groups) == 1 and any(v.groups[0] is g for g in u.groups)]
            for i, u in enumerate(found) if len(u.groups) > 1}


def offered(found: list) -> list:
    """The indices of the units the DP chooses for: the chains (each with its groups alone as an
    alternative) and the groups in no chain."""
    inner = {j for js in nesting(found).values() for j in js}
    return [i for i in range(len(found)) if i not in inner]
