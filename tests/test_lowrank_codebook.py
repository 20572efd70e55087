"""Low-rank, codebook, binary and ternary solvers against slow, obviously correct references."""

import itertools

import numpy as np
import pytest
from oracles import make_problem

from onnxobc.solver import ValueGrid, fit_uniform_grid, layer_loss, quantize
from onnxobc.solver.codebook import codebook, codebook_grid, quantize_fitted, refit_values, sign_grid, weighted_kmeans
from onnxobc.solver.lowrank import low_rank, quantized_low_rank


def als_low_rank(W, H, r, iters=500, seed=0):
    """Alternating least squares on ‖(W − A B) L‖²: each step is an exact minimisation."""
    L = np.linalg.cholesky(H)
    Z = W.astype(np.float64) @ L
    B = np.random.default_rng(seed).standard_normal((r, W.shape[1]))
    for _ in range(iters):
        A = np.linalg.lstsq((B @ L).T, Z.T, rcond=None)[0].T
        B = np.linalg.lstsq(A, W.astype(np.float64), rcond=None)[0]  # in the L metric this is plain LS on W
    return A @ B


@pytest.mark.parametrize("rows,cols,r", [(6, 10, 1), (12, 8, 3), (16, 16, 5)])
def test_low_rank_is_the_optimum(rows, cols, r):
    W, H = make_problem(rows, cols, seed=rows + r)
    res = low_rank(W, H, [r])[0]
    A, B = res.factors
    assert A.shape == (rows, r) and B.shape == (r, cols) and np.linalg.matrix_rank(res.weight) == r
    np.testing.assert_allclose(A @ B, res.weight, rtol=1e-4, atol=1e-6)
    assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-6)
    # the same optimum through the symmetric square root of H instead of its Cholesky factor
    vals, vecs = np.linalg.eigh(H)
    root = vecs @ np.diag(np.sqrt(vals)) @ vecs.T
    U, S, Vt = np.linalg.svd(W.astype(np.float64) @ root)
    other = (U[:, :r] * S[:r]) @ Vt[:r] @ np.linalg.inv(root)
    np.testing.assert_allclose(res.weight, other, rtol=1e-3, atol=1e-5)
    assert res.loss <= layer_loss(W, als_low_rank(W, H, r), H) * (1 + 1e-6)
    rng = np.random.default_rng(0)  # no random rank-r perturbation of it does better
    for _ in range(50):
        A2 = A + 0.01 * rng.standard_normal(A.shape)
        B2 = B + 0.01 * rng.standard_normal(B.shape)
        assert layer_loss(W, A2 @ B2, H) >= res.loss * (1 - 1e-9)


def test_low_rank_many_ranks_full_rank_and_errors():
    W, H = make_problem(8, 12, seed=1)
    res = low_rank(W, H, [1, 2, 4, 8])
    losses = [r.loss for r in res]
    assert losses == sorted(losses, reverse=True) and losses[-1] == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match="ranks must lie"):
        low_rank(W, H, [9])
    with pytest.raises(ValueError, match="not positive definite"):
        low_rank(W, -np.eye(12), [1])


def _on_grid(res):
    grid = res.grid
    return np.allclose(grid.dequantize(res.codes), res.weight, atol=1e-5)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantized_factors_lie_on_their_grids_and_refit_a_exactly(bits):
    W, H = make_problem(12, 20, seed=bits)
    res = quantized_low_rank(W, H, 4, bits, damp=0.0)
    ra, rb = res.factor_results
    A, B = res.factors
    assert A.shape == (12, 4) and B.shape == (4, 20) and _on_grid(ra) and _on_grid(rb)
    np.testing.assert_allclose(A.astype(np.float64) @ B, res.weight, rtol=1e-4, atol=1e-6)
    assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-6)
    # the refit A*: the least-squares A for the quantized B in the whitened space ‖(W − A B̂) L‖
    L = np.linalg.cholesky(H)
    Bq = B.astype(np.float64)
    A_ls = np.linalg.lstsq((Bq @ L).T, (W.astype(np.float64) @ L).T, rcond=None)[0].T
    H_A = Bq @ H @ Bq.T
    # ‖(W − Â B̂)X‖² = ‖(W − A* B̂)X‖² + ‖(Â − A*) B̂X‖² (the residual of A* is orthogonal)
    split = layer_loss(W, A_ls @ Bq, H) + layer_loss(A, A_ls, H_A)
    assert res.loss == pytest.approx(split, rel=1e-5)


def test_quantized_factors_beat_rounding_both_factors_and_approach_float_low_rank():
    better = 0
    for seed in range(6):
        W, H = make_problem(16, 24, seed=seed)
        A, B = low_rank(W, H, [6])[0].factors
        floating = low_rank(W, H, [6])[0].loss
        rtn = layer_loss(W, fit_uniform_grid(A, 4).dequantize(fit_uniform_grid(A, 4).codes(A))
                         @ fit_uniform_grid(B, 4).dequantize(fit_uniform_grid(B, 4).codes(B)), H)
        res = quantized_low_rank(W, H, 6, 4)
        assert res.loss >= floating * (1 - 1e-6)
        better += res.loss < rtn
        assert quantized_low_rank(W, H, 6, 8).loss < floating * 1.05
    assert better == 6


def test_weighted_kmeans_matches_brute_force_on_separated_data_and_is_a_fixed_point():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(c, 0.05, 30) for c in (-2.0, 0.0, 1.0, 3.0)])
    w = rng.uniform(0.5, 2.0, v.size)
    c = weighted_kmeans(v, w, 4)
    np.testing.assert_allclose(c, [-2.0, 0.0, 1.0, 3.0], atol=0.05)
    v, w = rng.standard_normal(9), rng.uniform(0.1, 3, 9)  # optimal 1-D clusters are contiguous
    c = weighted_kmeans(v, w, 3)
    order = np.argsort(v)
    cost = lambda parts: sum((w[p] * (v[p] - np.average(v[p], weights=w[p])) ** 2).sum() for p in parts)  # noqa: E731
    best = min(cost(np.split(order, cuts)) for cuts in itertools.combinations(range(1, 9), 2))
    label = np.abs(v[:, None] - c[None, :]).argmin(axis=1)
    got = sum((w[label == g] * (v[label == g] - c[g]) ** 2).sum() for g in range(3))
    assert got <= best * 1.25
    for g in range(3):  # every centre is the weighted mean of its cluster
        assert c[g] == pytest.approx(np.average(v[label == g], weights=w[label == g]), rel=1e-6)


def test_refit_values_equals_least_squares_in_the_whitened_space():
    W, H = make_problem(5, 7, seed=3)
    L = np.linalg.cholesky(H)
    for shared in (True, False):
        grid = codebook_grid(W, H, 3, per_row=not shared)
        codes = grid.codes(W.astype(np.float64))
        got = refit_values(W, H, codes, grid, shared)
        # oracle: Ŵ is linear in the values; solve ‖vec((W − Ŵ(v)) L)‖² by lstsq on the explicit map
        if shared:
            basis = [(codes == g).astype(float) for g in range(3)]
            M = np.stack([(E @ L).ravel() for E in basis], axis=1)
            v = np.linalg.lstsq(M, (W @ L).ravel(), rcond=None)[0]
            expect = np.tile(v, (5, 1))
        else:
            expect = np.stack([np.linalg.lstsq(np.stack([((codes[i] == g) * 1.0) @ L for g in range(3)], axis=1),
                                               W[i] @ L, rcond=None)[0] for i in range(5)])
        ok = np.all(np.diff(expect, axis=1) > 0, axis=1)
        np.testing.assert_allclose(got.values[ok], expect[ok], rtol=1e-6, atol=1e-9)
        assert layer_loss(W, got.dequantize(codes), H) <= layer_loss(W, grid.dequantize(codes), H) + 1e-12


@pytest.mark.parametrize("ternary", [False, True])
def test_sign_grid_minimises_the_weighted_rounding_error(ternary):
    W, H = make_problem(4, 9, seed=5)
    d = np.diag(H)
    grid = sign_grid(W, H, ternary)
    for i in range(4):
        err = lambda c: (d * (W[i] - ValueGrid(np.array([[-c, 0, c] if ternary else [-c, c]])).project(  # noqa: E731
            W[i:i + 1].astype(np.float64))[0]) ** 2).sum()
        cs = np.linspace(1e-4, np.abs(W[i]).max() * 1.5, 4000)
        assert err(grid.values[i, -1]) <= min(err(c) for c in cs) * (1 + 1e-3)


@pytest.mark.parametrize("kind", ["codebook16", "codebook4-rows", "binary", "ternary"])
def test_fitted_grids_beat_round_to_nearest_and_stay_on_their_values(kind):
    W, H = make_problem(24, 32, seed=7)
    grid = {"codebook16": lambda: codebook_grid(W, H, 16), "codebook4-rows": lambda: codebook_grid(W, H, 4, True),
            "binary": lambda: sign_grid(W, H, False), "ternary": lambda: sign_grid(W, H, True)}[kind]()
    shared = kind == "codebook16"
    res = quantize_fitted(W, H, grid, {"codebook16": "shared", "codebook4-rows": "rows"}.get(kind, "sign"))
    rtn = quantize(W, H, grid, method="rtn")
    assert res.loss < rtn.loss and res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-5)
    for i in range(24):
        assert set(np.unique(res.weight[i])) <= set(res.grid.values[i].astype(np.float32))
    if shared:
        assert np.all(res.grid.values == res.grid.values[0])
    if kind == "ternary":
        assert res.grid.values.shape[1] == 3 and np.all(res.grid.values[:, 1] == 0)


@pytest.mark.parametrize("per_row", [False, True])
def test_codebook16_is_no_worse_than_uniform_4bit_obq(per_row):
    for seed in range(3):
        W, H = make_problem(32, 96, seed=seed)
        book = codebook(W, H, 16, per_row=per_row)
        uniform = quantize(W, H, fit_uniform_grid(W, 4) if per_row else fit_uniform_grid(W.reshape(1, -1), 4).take(
            np.zeros(32, int)))
        assert book.loss <= uniform.loss and len(np.unique(book.weight)) <= (16 * 32 if per_row else 16)
