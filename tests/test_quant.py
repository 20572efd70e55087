import numpy as np
import pytest
from oracles import brute_quant, make_problem, masked_optimum

from onnxobc.solver import ValueGrid, fit_uniform_grid, layer_loss, prepare, prune_blocks, prune_nm, quantize

ENGINE = dict(dtype=np.float64, flush_every=4)
EXACT = dict(ENGINE, gptq_rows=False)  # OBQ alone, as the oracles compute it


@pytest.mark.parametrize("bits,sym", [(4, True), (3, False), (2, True), (8, False)])
@pytest.mark.parametrize("engine", ["eager", "deferred", "fused"])
def test_obq_matches_brute_force(bits, sym, engine):
    W, H = make_problem(4, 12, seed=bits)
    grid = fit_uniform_grid(W, bits, sym)
    order, inc, w = brute_quant(W, H, grid)
    res = quantize(W, H, grid, engine=engine, **EXACT)
    np.testing.assert_array_equal(res.order, order)
    np.testing.assert_allclose(res.weight, w, rtol=1e-6, atol=1e-7)
    assert res.loss == pytest.approx(inc.sum(), rel=1e-9)
    # Ŵ comes back as float32: its rounding (~1e-8 relative) is a sizeable part of an 8-bit error
    assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-4)


def test_outlier_rule_changes_order_and_matches_brute_force():
    W, H = make_problem(6, 16, seed=11)
    grid = fit_uniform_grid(W, 2, True, max_shrink=0.8)  # strong shrinking leaves outliers
    assert grid.outlier(W).any()
    with_rule = quantize(W, H, grid, **EXACT)
    without = quantize(W, H, grid, outliers=False, **EXACT)
    assert not np.array_equal(with_rule.order, without.order)
    for flag, res in [(True, with_rule), (False, without)]:
        order, inc, _ = brute_quant(W, H, grid, outliers=flag)
        np.testing.assert_array_equal(res.order, order)


def test_identity_hessian_gives_round_to_nearest():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 20)).astype(np.float32)
    grid = fit_uniform_grid(W, 3, False)
    H = np.eye(20)
    exact = quantize(W, H, grid, **EXACT)
    np.testing.assert_allclose(exact.weight, quantize(W, H, grid, method="rtn").weight)
    np.testing.assert_allclose(quantize(W, H, grid, method="gptq").weight, exact.weight)


@pytest.mark.parametrize("method", ["exact", "gptq", "rtn"])
def test_values_on_grid_and_codes(method):
    W, H = make_problem(8, 32, seed=12)
    for sym in (True, False):
        grid = fit_uniform_grid(W, 4, sym)
        res = quantize(W, H, grid, method=method, **(EXACT if method == "exact" else {}))
        np.testing.assert_allclose(grid.project(res.weight), res.weight, atol=1e-6)
        np.testing.assert_allclose(grid.dequantize(res.codes), res.weight, atol=1e-6)
        assert res.codes.min() >= grid.qmin and res.codes.max() <= grid.qmax
        assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-5)


def test_obq_at_or_below_gptq_and_rtn():
    W, H = make_problem(32, 64, seed=13)
    for bits in (3, 4):
        grid = fit_uniform_grid(W, bits, True)
        obq = quantize(W, H, grid, **EXACT).loss
        assert obq <= quantize(W, H, grid, method="gptq").loss
        assert obq < quantize(W, H, grid, method="rtn").loss


def test_exact_keeps_each_rows_better_of_obq_and_gptq():
    """With a few input features of large variance (as in transformers), greedy OBQ leaves their
    columns for last and GPTQ beats it on most rows; the exact method takes each row from the
    solver of lower loss, so it is at or below both, row by row, and a row's Ŵ is that solver's."""
    rng = np.random.default_rng(3)
    for outlier_scale in (1, 10):
        X = rng.standard_normal((48, 400))
        X[:3] *= outlier_scale
        W, H = prepare(rng.standard_normal((16, 48)).astype(np.float32), 2 * X @ X.T / 400)
        grid = fit_uniform_grid(W, 4, True)
        obq, gptq = quantize(W, H, grid, **EXACT), quantize(W, H, grid, method="gptq")
        both = quantize(W, H, grid, **ENGINE)
        np.testing.assert_allclose(both.row_loss, np.minimum(obq.row_loss, gptq.row_loss))
        take = gptq.row_loss < obq.row_loss
        assert take.any() and (~take).any() if outlier_scale == 1 else take.all()
        np.testing.assert_array_equal(both.weight, np.where(take[:, None], gptq.weight, obq.weight))
        assert both.loss == pytest.approx(layer_loss(W, both.weight, H), rel=1e-6)


def test_gptq_is_fixed_order_obs():
    """GPTQ in natural order equals brute-force OBS forced to quantize columns left to right."""
    from oracles import obs_row

    W, H = make_problem(3, 10, seed=14)
    grid = fit_uniform_grid(W, 3, True)
    res = quantize(W, H, grid, method="gptq", gptq_act_order=False)
    for r in range(3):
        rows = np.array([r])
        _, inc, w = obs_row(W[r], H, lambda wm, Hi, M, o: 0,
                            lambda wm, j, p: float(grid.project(wm[None, j : j + 1], rows)[0, 0]), 10)
        np.testing.assert_allclose(res.weight[r], w, rtol=1e-5, atol=1e-6)
        assert res.row_loss[r] == pytest.approx(inc.sum(), rel=1e-6)


@pytest.mark.parametrize("engine", ["eager", "deferred", "fused"])
def test_compound_nm_then_quantize_keeps_mask(engine):
    W, H = make_problem(6, 16, seed=15)
    pruned = prune_nm(W, H, 2, 4, engine=engine, **ENGINE)
    grid = fit_uniform_grid(pruned.weight, 4, True)
    both = quantize(W, H, grid, mask=pruned.mask, engine=engine, **EXACT)
    np.testing.assert_array_equal(both.mask, pruned.mask)
    assert np.all(both.weight[~pruned.mask] == 0)
    assert np.all(both.mask.reshape(6, -1, 4).sum(axis=2) == 2)
    np.testing.assert_allclose(grid.project(both.weight), both.weight, atol=1e-6)
    assert both.loss == pytest.approx(layer_loss(W, both.weight, H), rel=1e-6)
    # loss against the dense W = loss of pruning + loss of quantizing the pruned optimum
    from_pruned = quantize(pruned.weight, H, grid, mask=pruned.mask, engine=engine, **EXACT)
    np.testing.assert_allclose(from_pruned.weight, both.weight, atol=1e-6)
    assert both.loss == pytest.approx(pruned.loss + from_pruned.loss, rel=1e-6)
    # the survivors are quantized by OBS on the masked problem: brute force on H restricted
    for r in range(6):
        K = np.nonzero(pruned.mask[r])[0]
        Hk = H[np.ix_(K, K)]
        start = masked_optimum(W[r : r + 1], H, pruned.mask[r : r + 1])[0, K]
        from oracles import brute_quant

        sub = type(grid)(grid.scale[[r]], grid.zero[[r]], grid.qmin, grid.qmax, grid.bits, grid.symmetric)
        _, _, w = brute_quant(start[None, :], Hk, sub)
        np.testing.assert_allclose(both.weight[r, K], w[0], rtol=1e-5, atol=1e-6)


def test_compound_blocks_with_unequal_rows():
    """A global block mask leaves rows with different numbers of weights; OBQ handles them in one batch."""
    W, H = make_problem(6, 16, seed=16)
    pruned = prune_blocks(W, H, [0.5], dtype=np.float64)[0]
    assert len(set((~pruned.mask).sum(axis=1))) > 1
    grid = fit_uniform_grid(pruned.weight, 3, False)
    eager = quantize(W, H, grid, mask=pruned.mask, engine="eager", **EXACT)
    fast = quantize(W, H, grid, mask=pruned.mask, **EXACT)
    np.testing.assert_array_equal(eager.order, fast.order)
    assert fast.loss == pytest.approx(layer_loss(W, fast.weight, H), rel=1e-6)
    assert np.all(fast.weight[~pruned.mask] == 0)
    gptq = quantize(W, H, grid, method="gptq", mask=pruned.mask)
    assert np.all(gptq.weight[~pruned.mask] == 0)
    assert fast.loss <= gptq.loss


def test_ternary_and_codebook_value_grids():
    W, H = make_problem(6, 24, seed=17)
    c = np.abs(W).mean(axis=1, keepdims=True)
    ternary = ValueGrid(np.hstack([-c, 0 * c, c]))
    order, inc, w = brute_quant(W, H, ternary)
    res = quantize(W, H, ternary, **EXACT)
    np.testing.assert_array_equal(res.order, order)
    np.testing.assert_allclose(res.weight, w, rtol=1e-6, atol=1e-7)
    assert set(np.unique(res.codes)) <= {0, 1, 2}
    np.testing.assert_allclose(ternary.dequantize(res.codes), res.weight, atol=1e-7)
    assert res.loss < quantize(W, H, ternary, method="rtn").loss
    binary = ValueGrid(np.hstack([-c, c]))
    b = quantize(W, H, binary, **EXACT)
    assert np.all(np.isclose(np.abs(b.weight), c))


def test_exact_with_a_mask_gives_each_row_its_order_of_kept_columns():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((16, 200))
    X[:2] *= 10
    W, H = prepare(rng.standard_normal((8, 16)).astype(np.float32), 2 * X @ X.T / 200)
    pruned = prune_nm(W, H, 2, 4, **ENGINE)
    grid = fit_uniform_grid(W, 4, True)
    res = quantize(W, H, grid, mask=pruned.mask, **ENGINE)
    obq, gptq = (quantize(W, H, grid, mask=pruned.mask, **kw) for kw in (EXACT, dict(method="gptq")))
    take = gptq.row_loss < obq.row_loss
    assert take.any() and (~take).any()  # rows from each solver
    for r in range(8):
        fixed = res.order[r][res.order[r] >= 0]
        np.testing.assert_array_equal(np.sort(fixed), np.flatnonzero(pruned.mask[r]))
    assert np.all(res.weight[~pruned.mask] == 0)
