"""Structured ExactOBS (solver/structured.py) against slow references: the same greedy with every
step solved from scratch, the closed-form optimum of each removed set, and every subset of groups
on tiny problems (the greedy is not always the best subset; it is never better than it)."""

import itertools

import numpy as np
import pytest
from oracles import closed_form_loss, greedy_groups_from_scratch, make_problem

from onnxobc.solver import centered, layer_loss
from onnxobc.solver.structured import greedy_groups, prune_groups, without_columns


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


def test_on_the_centred_hessian_the_bias_is_solved_too():
    """Inputs with means far from zero: the columns kept solved on centered(H, μ), with the bias
    shift (W − Ŵ)·μ, give the least-squares fit of the dense outputs by the kept inputs and a
    constant (numpy's lstsq on the samples), at that fit's residual as their loss, below what the
    solve on H itself leaves after the same shift. An input that is constant costs nothing there
    and goes first."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 10)) * rng.uniform(0.5, 2, 10) + rng.normal(size=10) * 3
    W = rng.normal(size=(6, 10))
    H, mu = 2 * X.T @ X / len(X), X.mean(0)
    Hc = centered(H, mu)
    removed, keep = np.array([2, 7]), np.setdiff1d(np.arange(10), [2, 7])
    A = np.hstack([X[:, keep], np.ones((len(X), 1))])
    fit, *_ = np.linalg.lstsq(A, X @ W.T, rcond=None)
    residual = ((X @ W.T - A @ fit) ** 2).sum() / len(X)

    W_hat = without_columns(W, Hc, removed)
    np.testing.assert_allclose(W_hat[:, keep], fit[:-1].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose((W - W_hat) @ mu, fit[-1], rtol=1e-6, atol=1e-8)
    assert layer_loss(W, W_hat, Hc) == pytest.approx(residual, rel=1e-6)
    plain = without_columns(W, H, removed)
    assert residual < 0.99 * layer_loss(W, plain, Hc)  # the plain solve's error once its shift is folded

    X[:, 3] = 5.0
    H, mu = 2 * X.T @ X / len(X), X.mean(0)
    Hc = centered(H, mu)
    order, inc = greedy_groups(W, Hc + 0.01 * np.mean(np.diag(Hc)) * np.eye(10), np.arange(10)[:, None], 1)
    assert order[0] == 3 and inc[0] < 0.01 * layer_loss(W, 0, Hc)  # (only the dampening)
    assert greedy_groups(W, H, np.arange(10)[:, None], 1)[0][0] != 3
