"""Structured ExactOBS (solver/structured.py) against slow references: the same greedy with every
step solved from scratch, the closed-form optimum of each removed set, and every subset of groups
on tiny problems (the greedy is not always the best subset; it is never better than it)."""

import itertools

import numpy as np
import pytest
from oracles import closed_form_loss, greedy_groups_from_scratch, make_problem

from onnxobc.solver import layer_loss
from onnxobc.solver.structured import greedy_groups, prune_groups


def conv_groups(c_in, k):
    """A Conv's view: columns (kernel positions, input channels), channel c at c, c + C, …"""
    return np.arange(k)[None, :] * c_in + np.arange(c_in)[:, None]


@pytest.mark.parametrize("shape,groups", [((5, 12), np.arange(12)[:, None]),  # MLP neurons
                                          ((4, 18), conv_groups(6, 3)),  # Conv input channels, 3 positions
                                          ((6, 16), np.arange(16).reshape(4, 4))])  # heads of 4 columns
def test_greedy_matches_the_from_scratch_greedy_and_the_closed_form(shape, groups):
    W, H = make_problem(*shape, seed=3)
    order, inc = greedy_groups(W, H, groups, len(groups) - 1)
    assert order.tolist() == greedy_groups_from_scratch(W, H, groups, len(groups) - 1).tolist()
    counts = list(range(len(groups)))
    for k, r in zip(counts, prune_groups(W, H, groups, counts)):
        removed = groups[order[:k]].ravel()
        loss, W_hat = closed_form_loss(W, H, removed)
        assert r.loss == pytest.approx(loss, rel=1e-6, abs=1e-9)
        assert r.loss == pytest.approx(inc[:k].sum(), rel=1e-6, abs=1e-9)  # the increments add up
        assert r.loss == pytest.approx(layer_loss(W, r.weight, H), rel=1e-4, abs=1e-7)
        np.testing.assert_allclose(r.weight, W_hat, rtol=1e-4, atol=1e-5)
        assert not r.weight[:, removed].any() and r.mask.sum() == W.size - W.shape[0] * len(removed)


def test_greedy_against_every_subset():
    W, H = make_problem(4, 12, seed=5)
    groups = np.arange(12).reshape(6, 2)
    results = prune_groups(W, H, groups, range(7))
    for k, r in enumerate(results):
        best = min(closed_form_loss(W, H, groups[list(s)].ravel())[0] for s in itertools.combinations(range(6), k))
        assert r.loss >= best * (1 - 1e-9) - 1e-12
        if k <= 1:  # the first step is the best single group
            assert r.loss == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_levels_come_from_one_pass_in_any_order():
    W, H = make_problem(8, 20, seed=1)
    groups = np.arange(20).reshape(10, 2)
    a = prune_groups(W, H, groups, [7, 2, 5])
    b = {k: prune_groups(W, H, groups, [k])[0] for k in (2, 5, 7)}
    for k, r in zip([7, 2, 5], a):
        np.testing.assert_array_equal(r.weight, b[k].weight)
        assert r.order.tolist() == b[k].order.tolist()


@pytest.mark.parametrize("groups,counts,match", [
    (np.arange(12).reshape(3, 4) + 1, [1], "outside"),
    (np.array([[0, 1], [1, 2]]), [1], "more than one group"),
    (np.arange(12), [1], "groups must be"),
    (np.arange(12).reshape(6, 2), [7], "must be in"),
])
def test_bad_groups_and_counts(groups, counts, match):
    W, H = make_problem(3, 12)
    with pytest.raises(ValueError, match=match):
        prune_groups(W, H, groups, counts)


def test_joint_removal_over_several_consumers():
    """A channel two layers read: the joint greedy removes it from both at once, at the sum of their
    losses, and matches the greedy solved from scratch on the summed objective."""
    from oracles import closed_form_loss

    from onnxobc.solver.structured import greedy_joint

    (W1, H1), (W2, H2) = make_problem(5, 12, seed=7), make_problem(3, 8, seed=8)
    g1, g2 = np.arange(12).reshape(4, 3), np.arange(8).reshape(4, 2)
    order, inc = greedy_joint([(W1, H1, g1), (W2, H2, g2)], 3)
    removed, left = [], list(range(4))
    for step in range(3):
        def total(q):
            s = removed + [q]
            return (closed_form_loss(W1, H1, g1[s].ravel())[0] + closed_form_loss(W2, H2, g2[s].ravel())[0])
        q = min(left, key=total)
        assert order[step] == q
        assert inc[: step + 1].sum() == pytest.approx(total(q), rel=1e-6)
        removed.append(q)
        left.remove(q)
