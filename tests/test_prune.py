import numpy as np
import pytest
from oracles import brute_blocks, brute_nm, brute_unstructured, heap_global_counts, make_problem, masked_optimum

from onnxobc.solver import layer_loss, prune_blocks, prune_nm, prune_unstructured, sparsity_grid
from onnxobc.solver.levels import global_counts

EXACT = dict(dtype=np.float64, flush_every=4)


@pytest.mark.parametrize("engine", ["eager", "deferred", "fused"])
def test_unstructured_matches_brute_force_obs(engine):
    W, H = make_problem(5, 12, seed=1)
    order, inc = brute_unstructured(W, H)
    res = prune_unstructured(W, H, [0.5], engine=engine, **EXACT)[0]
    np.testing.assert_array_equal(res.order, order)
    # every level's weights are the optimum for its mask, and its loss the sum of increments
    np.testing.assert_allclose(res.weight, masked_optimum(W, H, res.mask), rtol=1e-5, atol=1e-6)
    counts = (~res.mask).sum(axis=1)
    expect = sum(inc[r, : counts[r]].sum() for r in range(W.shape[0]))
    assert res.loss == pytest.approx(expect, rel=1e-9)


def test_unstructured_levels_and_losses():
    W, H = make_problem(8, 32, seed=2)
    levels = sparsity_grid()
    assert levels[0] == pytest.approx(0.1) and levels[-1] <= 0.99 < 1 - 0.9 ** (len(levels) + 1)
    results = prune_unstructured(W, H, levels, **EXACT)
    losses = [r.loss for r in results]
    for s, r in zip(levels, results):
        assert (~r.mask).sum() == round(s * W.size)
        assert np.all(r.weight[~r.mask] == 0)
        assert r.loss == pytest.approx(layer_loss(W, r.weight, H), rel=1e-6)
        np.testing.assert_allclose(r.row_loss.sum(), r.loss)
    assert losses == sorted(losses)


def test_global_mask_equals_heap_algorithm_2():
    rng = np.random.default_rng(3)
    inc = rng.exponential(size=(7, 20)) * rng.uniform(0.1, 3, size=(7, 1))
    for k in [0, 1, 13, 50, 99, 140]:
        np.testing.assert_array_equal(global_counts(inc, [k])[0], heap_global_counts(inc, k))


def test_identity_hessian_gives_magnitude_pruning():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((6, 16)).astype(np.float32)
    H = np.eye(16)
    for s in [0.25, 0.5, 0.75]:
        exact = prune_unstructured(W, H, [s], **EXACT)[0]
        mag = prune_unstructured(W, H, [s], method="magnitude")[0]
        np.testing.assert_array_equal(exact.mask, mag.mask)
        np.testing.assert_allclose(exact.weight, mag.weight)
    np.testing.assert_array_equal(prune_nm(W, H, 2, 4, **EXACT).mask, prune_nm(W, H, 2, 4, method="magnitude").mask)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
@pytest.mark.parametrize("engine", ["eager", "deferred", "fused"])
def test_nm_matches_brute_force(n, m, engine):
    W, H = make_problem(4, 16, seed=5)
    order, inc, w = brute_nm(W, H, n, m)
    res = prune_nm(W, H, n, m, engine=engine, **EXACT)
    np.testing.assert_array_equal(res.order, order)
    np.testing.assert_allclose(res.weight, w, rtol=1e-5, atol=1e-6)
    assert res.loss == pytest.approx(inc.sum(), rel=1e-9)
    assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-6)
    kept = res.mask.reshape(4, -1, m).sum(axis=2)
    assert np.all(kept == n)


@pytest.mark.parametrize("engine", ["eager", "deferred", "fused"])
def test_blocks_match_brute_force_group_obs(engine):
    W, H = make_problem(3, 16, seed=6)
    order, inc = brute_blocks(W, H, 4)
    res = prune_blocks(W, H, [0.25, 0.5, 0.75], engine=engine, **EXACT)
    np.testing.assert_array_equal(res[0].order, order)
    for r in res:
        blocks = r.mask.reshape(3, 4, 4)
        assert np.all(blocks.all(axis=2) | ~blocks.any(axis=2)), "a block is pruned whole or not at all"
        np.testing.assert_allclose(r.weight, masked_optimum(W, H, r.mask), rtol=1e-5, atol=1e-6)
        assert r.loss == pytest.approx(layer_loss(W, r.weight, H), rel=1e-6)
    assert [(~r.mask).sum() // 4 for r in res] == [3, 6, 9]


def test_exact_beats_baselines():
    W, H = make_problem(32, 64, seed=7)
    for s in [0.3, 0.5, 0.8]:
        exact = prune_unstructured(W, H, [s], **EXACT)[0].loss
        assert exact < prune_unstructured(W, H, [s], method="magnitude")[0].loss
        assert exact < prune_unstructured(W, H, [s], method="sparsegpt")[0].loss
    nm = prune_nm(W, H, 2, 4, **EXACT).loss
    assert nm < prune_nm(W, H, 2, 4, method="sparsegpt").loss < prune_nm(W, H, 2, 4, method="magnitude").loss
    assert prune_blocks(W, H, [0.5], **EXACT)[0].loss < prune_blocks(W, H, [0.5], method="magnitude")[0].loss


def test_sparsegpt_masks_and_losses():
    W, H = make_problem(16, 64, seed=8)
    r = prune_unstructured(W, H, [0.5], method="sparsegpt")[0]
    assert r.sparsity == pytest.approx(0.5)
    assert r.loss == pytest.approx(layer_loss(W, r.weight, H), rel=1e-6)
    nm = prune_nm(W, H, 2, 4, method="sparsegpt")
    assert np.all(nm.mask.reshape(16, -1, 4).sum(axis=2) == 2)
    assert nm.loss == pytest.approx(layer_loss(W, nm.weight, H), rel=1e-6)
