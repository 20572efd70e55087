import numpy as np
import pytest

from onnxobc.solver import ValueGrid, fit_uniform_grid
from onnxobc.solver.grids import code_range


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("sym", [True, False])
def test_uniform_grid_projection_is_nearest_point(bits, sym):
    rng = np.random.default_rng(bits)
    W = rng.standard_t(3, (6, 40)).astype(np.float32)
    g = fit_uniform_grid(W, bits, sym)
    qmin, qmax = code_range(bits, sym)
    assert (g.qmin, g.qmax) == (qmin, qmax)
    if sym:
        assert np.all(g.zero == 0) and qmin == -(2 ** (bits - 1))
    else:
        assert np.all(g.zero == np.rint(g.zero)) and qmin == 0
        np.testing.assert_allclose(g.project(np.zeros((6, 1))), 0, atol=1e-12)  # 0 is on the grid
    points = g.scale[:, None] * (np.arange(qmin, qmax + 1)[None, :] - g.zero[:, None])
    brute = np.take_along_axis(points, np.abs(W[:, :, None] - points[:, None, :]).argmin(axis=2), axis=1)
    # nearest point (ties, e.g. v/s = −63.5, may go either way)
    np.testing.assert_allclose(np.abs(g.project(W) - W), np.abs(brute - W), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.dequantize(g.codes(W)), g.project(W), rtol=1e-6, atol=1e-7)


def test_mse_search_never_worse_than_full_range():
    W = np.random.default_rng(0).standard_t(2, (20, 64)).astype(np.float32)
    for sym in (True, False):
        plain = fit_uniform_grid(W, 3, sym, mse=False)
        best = fit_uniform_grid(W, 3, sym)
        e0 = ((plain.project(W) - W) ** 2).sum(axis=1)
        e1 = ((best.project(W) - W) ** 2).sum(axis=1)
        assert np.all(e1 <= e0 + 1e-9) and e1.sum() < e0.sum()


@pytest.mark.parametrize("sym", [True, False])
def test_per_tensor_grid_is_the_best_shared_grid_of_the_search(sym):
    """One grid for every row; its total error is the least over the search's shrink factors,
    each checked by brute force with a single-row fit of the whole tensor's values."""
    W = np.random.default_rng(1).standard_t(3, (7, 30)).astype(np.float32)
    g = fit_uniform_grid(W, 4, sym, per_tensor=True)
    assert np.all(g.scale == g.scale[0]) and np.all(g.zero == g.zero[0]) and len(g.scale) == 7
    err = ((g.project(W) - W) ** 2).sum()
    flat = W.reshape(1, -1)  # one row holding every value: the same range, the same candidates
    for p in range(0, 81):
        cand = fit_uniform_grid(flat, 4, sym, mse=False, max_shrink=0.8)
        cand.scale = cand.scale * (1 - p / 100)
        if not sym:
            lo = min(flat.min(), 0.0) * (1 - p / 100)
            cand.zero = np.clip(np.rint(cand.qmin - lo / cand.scale), cand.qmin, cand.qmax)
        assert err <= ((cand.project(flat) - flat) ** 2).sum() + 1e-9
    same_rows = np.repeat(W[:1], 5, axis=0)  # identical rows: per-row and per-tensor agree
    a, b = fit_uniform_grid(same_rows, 4, sym), fit_uniform_grid(same_rows, 4, sym, per_tensor=True)
    np.testing.assert_allclose(a.scale, b.scale)
    np.testing.assert_allclose(a.zero, b.zero)


def test_outliers_are_beyond_half_a_step():
    W = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    g = fit_uniform_grid(W, 2, False, mse=False)  # grid {0, 1, 2, 3}
    v = np.array([[-0.4, -0.6, 3.4, 3.6, 1.7]])
    np.testing.assert_array_equal(g.outlier(v), [[False, True, False, True, False]])
    vg = ValueGrid(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(vg.outlier(np.array([[-1.4, -1.6, 2.9, 3.1]])), [[False, True, False, True]])


def test_value_grid_projection_and_codes():
    rng = np.random.default_rng(1)
    vals = np.sort(rng.standard_normal((5, 16)), axis=1)
    g = ValueGrid(vals)
    v = rng.standard_normal((5, 30)) * 2
    brute = np.take_along_axis(vals, np.abs(v[:, :, None] - vals[:, None, :]).argmin(axis=2), axis=1)
    np.testing.assert_allclose(g.project(v), brute)
    np.testing.assert_allclose(g.dequantize(g.codes(v)), brute.astype(np.float32))


def test_grid_errors():
    W = np.ones((2, 4), np.float32)
    for bits in (1, 9, 4.5):
        with pytest.raises(ValueError, match="bits"):
            fit_uniform_grid(W, bits)
    with pytest.raises(ValueError, match="increasing"):
        ValueGrid(np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="G >= 2"):
        ValueGrid(np.array([[1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        ValueGrid(np.array([[0.0, np.nan]]))
