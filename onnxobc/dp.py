"""Choosing one compression level per layer under a budget (the knapsack-style DP of the
OBC paper, after AdaQuant/SPDY): minimise Σ loss[l][k] subject to Σ cost[l][k] ≤ budget.
Pure: lists of numbers in, one level index per layer out.

A cost may be negative (a channel cut that removes more work outside its layer than the
narrowed layer still does) and so may the budget: each layer's costs are counted from its
cheapest level, and the budget less the cheapest levels' sum is what the DP spends. That spare
is discretised into `buckets` steps, costs rounded up, so a plan that fits in buckets always fits
the real budget; finer buckets lose less to the rounding. O(layers × levels × buckets) time,
O(layers × buckets) memory for the back-pointers.
"""

from __future__ import annotations

import numpy as np


class InfeasibleBudget(ValueError):
    """No choice of levels fits the budget; `best` is the least total cost any choice reaches."""

    def __init__(self, budget: float, best: float):
        self.budget, self.best = budget, best
        super().__init__(f"no choice of levels fits the budget {budget:.6g}: the cheapest reaches {best:.6g}")


def solve(losses, costs, budget: float, buckets: int = 10_000) -> list[int]:
    """The level index per layer of least total loss whose total cost is within `budget`.
    `losses[l][k]`, `costs[l][k]`: per layer l and level k (layers may have different numbers
    of levels; costs of any sign). Raises InfeasibleBudget when even the cheapest levels exceed
    the budget."""
    if len(losses) != len(costs) or any(len(a) != len(b) or not len(a) for a, b in zip(losses, costs)):
        raise ValueError("losses and costs need the same, non-empty, number of levels for every layer")
    if any(not np.isfinite(c) for cs in costs for c in cs) or any(not np.isfinite(e) for es in losses for e in es):
        raise ValueError("costs and losses must be finite")
    if not np.isfinite(budget) or buckets < 1:
        raise ValueError(f"the budget must be finite and buckets ≥ 1, got {budget} and {buckets}")
    lows = [min(c) for c in costs]
    cheapest = float(sum(lows))
    spare = budget - cheapest
    if spare < -1e-12 * max(abs(budget), abs(cheapest)):
        raise InfeasibleBudget(budget, cheapest)
    if spare <= 0:  # only the cheapest levels fit: of those, the least loss
        return [min((k for k, c in enumerate(cs) if c == lo), key=lambda k: loss[k])
                for loss, cs, lo in zip(losses, costs, lows)]
    costs = [[c - lo for c in cs] for cs, lo in zip(costs, lows)]
    unit = spare / buckets
    inf = np.inf
    best = np.full(buckets + 1, inf)  # best[b]: least loss with discretised cost exactly b
    best[0] = 0.0
    back = []
    for loss, cost in zip(losses, costs):
        steps = np.ceil(np.asarray(cost, np.float64) / unit - 1e-9).astype(np.int64)
        new = np.full(buckets + 1, inf)
        arg = np.full(buckets + 1, -1, np.int64)
        for k, (e, s) in enumerate(zip(loss, steps)):
            if s > buckets:
                continue
            cand = np.full(buckets + 1, inf)
            cand[s:] = best[: buckets + 1 - s] + e
            better = cand < new
            new[better], arg[better] = cand[better], k
        best = new
        back.append(arg)
    b = int(np.argmin(best))
    choice = []
    for l in range(len(losses) - 1, -1, -1):
        k = int(back[l][b])
        choice.append(k)
        b -= int(np.ceil(costs[l][k] / unit - 1e-9))
    return choice[::-1]


def combine(options: list) -> list:
    """The Pareto front of the sums of one option from each list of `options` (a list per member
    of a unit, each option (cost, loss)): (cost, loss, the option index per member), by cost
    ascending, each with less loss than every cheaper one. A unit whose members choose their
    levels together (the layers of a channel group) enters the DP as one layer with these options."""
    front = [(0.0, 0.0, ())]
    for member in options:
        sums = [(c + mc, e + me, picks + (k,)) for c, e, picks in front for k, (mc, me) in enumerate(member)]
        front = pareto(sums)
    return front


def pareto(options: list) -> list:
    """The options (cost, loss, …) no other is both cheaper (or as cheap) and better than, by cost."""
    out = []
    for opt in sorted(options, key=lambda o: (o[0], o[1])):
        if not out or opt[1] < out[-1][1]:
            out.append(opt)
    return out
