"""Additive combinations and the LC penalty solver against references: each summand is its own
solver's answer, combinations beat their parts where the structure calls for them, and the LC
result lies between the brute-force optimum and the plain projection it starts from."""

import itertools

import numpy as np
import pytest
from oracles import make_problem, masked_optimum

from onnxobc.solver import ValueGrid, fit_uniform_grid, layer_loss, low_rank, quantize
from onnxobc.solver.additive import additive, low_rank_part, quantized_part, sparse_part
from onnxobc.solver.lc import lc_penalty, project_rank, project_sparse, project_uniform


def test_additive_result_is_the_sum_of_its_parts():
    W, H = make_problem(8, 24, seed=1)
    res = additive(W, H, [sparse_part(0.05), quantized_part(3)])
    assert [p.mask is not None for p in res.parts] == [True, False]
    np.testing.assert_allclose(res.weight, res.parts[0].weight + res.parts[1].weight, atol=1e-6)
    assert res.loss == pytest.approx(layer_loss(W, res.weight, H), rel=1e-6)
    assert res.parts[0].mask.mean() == pytest.approx(0.05, abs=1 / W.size)
    grid = res.parts[1].grid
    np.testing.assert_allclose(grid.project(res.parts[1].weight.astype(np.float64)), res.parts[1].weight,
                               rtol=1e-6, atol=1e-7)  # on its grid


def test_outliers_in_a_sparse_part_beat_quantization_alone():
    W, H = make_problem(16, 64, seed=2)
    W[np.random.default_rng(0).random(W.shape) < 0.02] *= 8  # a few outliers stretch every row's grid
    alone = quantize(W, H, fit_uniform_grid(W, 3))
    combined = additive(W, H, [sparse_part(0.03), quantized_part(3)])
    assert combined.loss < 0.5 * alone.loss, (combined.loss, alone.loss)


def test_low_rank_plus_quantization_beats_each_part_on_a_low_rank_weight():
    rng = np.random.default_rng(3)
    W, H = make_problem(24, 48, seed=3)
    W = (rng.standard_normal((24, 3)) @ rng.standard_normal((3, 48)) + 0.05 * W).astype(np.float32)
    both = additive(W, H, [low_rank_part(3), quantized_part(2)])
    assert both.loss < 0.5 * low_rank(W, H, [3])[0].loss
    assert both.loss < 0.5 * quantize(W, H, fit_uniform_grid(W, 2)).loss


def test_additive_rejects_bad_input():
    W, H = make_problem(4, 8)
    with pytest.raises(ValueError, match="at least two parts"):
        additive(W, H, [quantized_part(4)])
    with pytest.raises(ValueError, match="rounds"):
        additive(W, H, [quantized_part(4), sparse_part(0.1)], rounds=0)
    with pytest.raises(ValueError, match="share of the weights"):
        sparse_part(1.5)


def brute_sparse(W, H, keep):
    """The optimum over every mask keeping `keep` weights of the layer, each with its optimal
    surviving values."""
    best = np.inf
    for kept in itertools.combinations(range(W.size), keep):
        mask = np.zeros(W.size, bool)
        mask[list(kept)] = True
        best = min(best, layer_loss(W, masked_optimum(W, H, mask.reshape(W.shape)), H))
    return best


def brute_grid(W, H, grid):
    """The optimum over every assignment of a row's weights to its grid values."""
    total = 0.0
    for i, w in enumerate(W.astype(np.float64)):
        options = np.array(list(itertools.product(grid.values[i], repeat=len(w))))
        D = w - options
        total += np.min(np.einsum("ij,jk,ik->i", D, H, D)) / 2
    return total


def test_lc_lies_between_the_optimum_and_the_plain_projection():
    W, H = make_problem(2, 6, seed=4)
    # sparse: 6 of 12 weights kept
    res = lc_penalty(W, H, project_sparse(0.5))
    assert np.count_nonzero(res.weight) <= 6
    plain = layer_loss(W, project_sparse(0.5)(W.astype(np.float64)), H)
    assert brute_sparse(W, H, 6) - 1e-9 <= res.loss <= plain + 1e-12
    assert res.loss < plain  # the penalty path moves away from magnitude pruning here
    # a fixed 4-value grid per row
    grid = ValueGrid(np.tile(np.array([-0.2, -0.05, 0.05, 0.2]), (2, 1)))
    res = lc_penalty(W, H, lambda V: grid.project(V))
    assert np.all(np.isin(res.weight, grid.values.astype(np.float32)))
    rtn = layer_loss(W, grid.project(W), H)
    assert brute_grid(W, H, grid) - 1e-9 <= res.loss <= rtn + 1e-12


def test_lc_low_rank_approaches_the_closed_form_optimum():
    W, H = make_problem(20, 40, seed=5, ill=True)
    best = low_rank(W, H, [4])[0].loss
    plain = layer_loss(W, project_rank(4)(W.astype(np.float64)), H)
    res = lc_penalty(W, H, project_rank(4))
    assert best * (1 - 1e-6) <= res.loss < min(1.3 * best, plain)
    assert plain > 2 * best  # the problem is one where the data matter


def test_lc_uniform_projection_stays_on_a_grid():
    W, H = make_problem(6, 16, seed=6)
    res = lc_penalty(W, H, project_uniform(3), steps=20)
    assert max(len(np.unique(row)) for row in res.weight) <= 8
    with pytest.raises(ValueError, match="steps"):
        lc_penalty(W, H, project_uniform(3), steps=0)
