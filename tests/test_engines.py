"""The deferred-downdate fast path takes the same greedy decisions as the eager oracle."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import make_problem

from onnxobc.solver import fit_uniform_grid, layer_loss, prune_blocks, prune_nm, prune_unstructured, quantize

SMALL_BATCHES = 20_000  # bytes: forces several row batches on the test shapes


def fast_and_oracle(fn, **kw):
    """(oracle, fast) pairs: the eager oracle against each fast engine."""
    eager = fn(engine="eager", **kw)
    return [(eager, fn(engine=e, **kw)) for e in ("deferred", "fused")]


@pytest.mark.parametrize("ill", [False, True])
@pytest.mark.parametrize("flush", [1, 3, 16, 128])
def test_same_decisions_all_families(ill, flush):
    W, H = make_problem(10, 48, seed=21, ill=ill, damp=1e-4 if ill else 0.01)
    if ill:
        assert np.linalg.cond(H) > 1e4
    kw = dict(dtype=np.float64, flush_every=flush, mem_bytes=SMALL_BATCHES)
    grid = fit_uniform_grid(W, 4, True)
    runs = {
        "unstructured": lambda **k: prune_unstructured(W, H, [0.3, 0.7], **k)[1],
        "2:4": lambda **k: prune_nm(W, H, 2, 4, **k),
        "block4": lambda **k: prune_blocks(W, H, [0.5], **k)[0],
        "obq": lambda **k: quantize(W, H, grid, **k),
    }
    for name, fn in runs.items():
        for eager, fast in fast_and_oracle(fn, **kw):
            np.testing.assert_array_equal(eager.order, fast.order, err_msg=name)
            np.testing.assert_allclose(fast.weight, eager.weight, rtol=1e-6, atol=1e-7, err_msg=name)
            assert fast.loss == pytest.approx(eager.loss, rel=1e-8), name


def test_compaction_happens_and_changes_nothing():
    from onnxobc.solver import policies
    from onnxobc.solver.elimination import DeferredState, EagerState, start_rows
    from onnxobc.solver.hessian import inverse

    W, H = make_problem(4, 64, seed=22)
    states = [cls(*start_rows(H, inverse(H), W, None, np, np.float64)[:4], 64, **kw)
              for cls, kw in [(EagerState, {}), (DeferredState, dict(flush_every=8, compact_frac=0.125))]]
    widths = []
    for _ in range(5):
        orders = [policies.prune_all(s, 8)[0] for s in states]
        np.testing.assert_array_equal(*orders)
        widths.append(states[1].w.shape[1])
    # a 1/8 share of the current width is dropped whenever it is eliminated
    assert widths == [56, 49, 43, 34, 24]
    assert states[1].Hinv.shape == (4, 24, 24)
    np.testing.assert_allclose(states[1].weights(), states[0].weights(), rtol=1e-9, atol=1e-12)


def test_float32_agrees_with_float64():
    W, H = make_problem(16, 96, seed=23)
    grid = fit_uniform_grid(W, 4, True)
    hi = quantize(W, H, grid, dtype=np.float64)
    for engine in ("deferred", "fused"):
        lo = quantize(W, H, grid, dtype=np.float32, engine=engine)
        assert lo.loss == pytest.approx(hi.loss, rel=1e-3)
        assert (lo.codes == hi.codes).mean() > 0.99
    p32 = prune_unstructured(W, H, [0.5])[0]
    p64 = prune_unstructured(W, H, [0.5], dtype=np.float64)[0]
    assert p32.loss == pytest.approx(p64.loss, rel=1e-3)
    assert p32.loss == pytest.approx(layer_loss(W, p32.weight, H), rel=1e-3)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), groups=st.integers(1, 6), seed=st.integers(0, 10_000),
       flush=st.sampled_from([1, 2, 4, 8, 12]), bits=st.integers(2, 8), sym=st.booleans(), ill=st.booleans())
def test_property_fast_path_equals_oracle(rows, groups, seed, flush, bits, sym, ill):
    cols = 4 * groups
    W, H = make_problem(rows, cols, seed=seed, ill=ill, damp=1e-3)
    kw = dict(dtype=np.float64, flush_every=flush, mem_bytes=8 * cols * cols * 2)
    grid = fit_uniform_grid(W, bits, sym)
    for fn in (lambda **k: quantize(W, H, grid, **k), lambda **k: prune_nm(W, H, 2, 4, **k),
               lambda **k: prune_blocks(W, H, [0.5], **k)[0], lambda **k: prune_unstructured(W, H, [0.5], **k)[0]):
        for eager, fast in fast_and_oracle(fn, **kw):
            np.testing.assert_array_equal(eager.order, fast.order)
            assert fast.loss == pytest.approx(eager.loss, rel=1e-7, abs=1e-12)


def test_masked_quantization_over_row_batches_with_uneven_survivors():
    """Prune-then-quantize where the row batches keep different numbers of weights (found with
    4-blocks on a 128×1152 Conv): split into batches, the result equals the one-batch run."""
    W, H = make_problem(12, 48, seed=23)
    mask = np.ones_like(W, dtype=bool)
    mask[:6, :20] = False  # the first batch keeps 28 weights a row, the second 48
    grid = fit_uniform_grid(W * mask, 4, True)
    one = quantize(W, H, grid, mask=mask, engine="eager", dtype=np.float64)
    for engine in ("eager", "deferred", "fused"):
        split = quantize(W, H, grid, mask=mask, engine=engine, dtype=np.float64, mem_bytes=6 * 48 * 48 * 8)
        assert split.order.shape == one.order.shape
        np.testing.assert_array_equal(split.order, one.order)
        np.testing.assert_allclose(split.weight, one.weight, rtol=1e-6, atol=1e-7)
        assert not split.weight[~mask].any()
