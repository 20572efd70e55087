"""The level-choosing DP against brute force on small instances."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxobc.dp import InfeasibleBudget, solve


def brute(losses, costs, budget):
    best = None
    for choice in itertools.product(*[range(len(l)) for l in losses]):
        cost = sum(c[k] for c, k in zip(costs, choice))
        loss = sum(l[k] for l, k in zip(losses, choice))
        if cost <= budget + 1e-9 and (best is None or loss < best[0]):
            best = (loss, choice)
    return best


def instance(rng, layers, levels, integer, low=0):
    costs = [rng.integers(low, 10, levels[l]).astype(float) if integer else rng.uniform(low, 10, levels[l])
             for l in range(layers)]
    losses = [rng.uniform(0, 5, levels[l]) for l in range(layers)]
    return losses, costs


@pytest.mark.parametrize("low", [0, -10])  # costs and budgets of any sign (a cut saving work outside its layer)
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4))
def test_integer_costs_match_brute_force_exactly(low, seed, layers, max_levels):
    rng = np.random.default_rng(seed)
    losses, costs = instance(rng, layers, rng.integers(1, max_levels + 1, layers), integer=True, low=low)
    cheapest = int(sum(min(c) for c in costs))
    budget = int(rng.integers(max(1, cheapest) if low == 0 else cheapest, cheapest + 10 * layers + 1))
    # one bucket per cost unit of what the budget leaves over the cheapest levels: no rounding
    choice = solve(losses, costs, budget, buckets=max(1, budget - cheapest))
    assert sum(c[k] for c, k in zip(costs, choice)) <= budget
    assert sum(l[k] for l, k in zip(losses, choice)) == pytest.approx(brute(losses, costs, budget)[0])
    with pytest.raises(InfeasibleBudget):
        solve(losses, costs, cheapest - 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_real_costs_are_feasible_and_lose_at_most_the_rounding(seed, layers):
    rng = np.random.default_rng(seed)
    losses, costs = instance(rng, layers, [3] * layers, integer=False)
    cheapest = float(sum(min(c) for c in costs))
    budget = cheapest + rng.uniform(0.5, 10)
    buckets = 500
    choice = solve(losses, costs, budget, buckets)
    loss = sum(l[k] for l, k in zip(losses, choice))
    assert sum(c[k] for c, k in zip(costs, choice)) <= budget * (1 + 1e-12)
    assert loss >= brute(losses, costs, budget)[0] - 1e-9
    # rounding costs ≤ one bucket (of what the budget leaves over the cheapest levels) per layer
    tighter = brute(losses, costs, budget - layers * (budget - cheapest) / buckets)
    if tighter is not None:
        assert loss <= tighter[0] + 1e-9


def test_infeasible_budget_names_the_cheapest_total():
    with pytest.raises(InfeasibleBudget) as e:
        solve([[1, 2], [3, 4]], [[5, 6], [2, 9]], budget=6)
    assert e.value.best == 7 and "cheapest reaches 7" in str(e.value)


@pytest.mark.parametrize("losses,costs,budget", [([[1]], [[1, 2]], 3), ([[1]], [[np.inf]], 3),
                                                 ([[1]], [[1]], np.nan), ([[]], [[]], 1), ([[np.nan]], [[1]], 1)])
def test_bad_input(losses, costs, budget):
    with pytest.raises(ValueError):
        solve(losses, costs, budget)
