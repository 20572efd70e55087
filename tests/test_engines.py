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
        "obq": lambda **k: quantize(W, H, grid, gptq_rows=False, **k),
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
    for fn in (lambda **k: quantize(W, H, grid, gptq_rows=False, **k), lambda **k: prune_nm(W, H, 2, 4, **k),
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
    one = quantize(W, H, grid, mask=mask, engine="eager", dtype=np.float64, gptq_rows=False)
    for engine in ("eager", "deferred", "fused"):
        split = quantize(W, H, grid, mask=mask, engine=engine, dtype=np.float64, mem_bytes=6 * 48 * 48 * 8,
                         gptq_rows=False)
        assert split.order.shape == one.order.shape
        np.testing.assert_array_equal(split.order, one.order)
        np.testing.assert_allclose(split.weight, one.weight, rtol=1e-6, atol=1e-7)
        assert not split.weight[~mask].any()


def test_steps_read_the_device_only_to_compact(monkeypatch):
    """The deferred path counts alive positions on the host: it reads them from the arrays (a
    wait for a GPU) only when a compaction looks due, not at every step."""
    from onnxobc.solver.elimination import DeferredState

    reads = []
    original = DeferredState.read_alive_max
    monkeypatch.setattr(DeferredState, "read_alive_max", lambda self: reads.append(1) or original(self))
    W, H = make_problem(6, 256, seed=24)
    grid = fit_uniform_grid(W, 4, True)
    fast = quantize(W, H, grid, engine="deferred", dtype=np.float64, gptq_rows=False)
    np.testing.assert_array_equal(fast.order, quantize(W, H, grid, engine="eager", dtype=np.float64, gptq_rows=False).order)
    assert 0 < len(reads) <= 20  # 256 steps, one read per compaction (a quarter of the width each)


def test_a_stalled_row_is_not_compacted_away():
    """If a row fixed nothing in some steps, the host's count is low: the read before compacting
    corrects it, and no alive position is dropped."""
    from onnxobc.solver.elimination import DeferredState, start_rows
    from onnxobc.solver.hessian import inverse

    W, H = make_problem(3, 32, seed=25)
    state = DeferredState(*start_rows(H, inverse(H), W, None, np, np.float64)[:4], 32, flush_every=4)
    state.alive[1:, :12] = False  # rows 1 and 2 lost 12 positions, row 0 none
    state.alive_bound = 20
    state.checkpoint()
    assert state.alive_bound == 32 and state.w.shape[1] == 32  # nothing to drop yet
    state.alive[0, 4:12] = False
    state.alive_bound = 24  # as 8 more steps would have counted
    state.checkpoint()
    assert state.alive_bound == 24 and state.w.shape[1] == 24
    assert state.alive.sum(axis=1).tolist() == [24, 20, 20]


def test_device_forms_on_numpy():
    """The GPU's chunked batched GEMM flush and chunked gather compaction, run through NumPy,
    equal the CPU's per-row BLAS and take."""
    from onnxobc.solver.backend import sub_gram_, sub_gram_batched_
    from onnxobc.solver.elimination import compact_inverse, gather_rows_, keep_positions

    rng = np.random.default_rng(26)
    C = rng.standard_normal((7, 20, 20))
    C = C + C.transpose(0, 2, 1)
    U = rng.standard_normal((7, 5, 20))
    ref, chunked = C.copy(), C.copy()
    sub_gram_(ref, U)
    sub_gram_batched_(chunked, U, temp_bytes=3 * 20 * 20 * 8)  # chunks of 3 rows
    np.testing.assert_allclose(chunked, ref, rtol=1e-12, atol=1e-12)
    alive = rng.random((7, 20)) < 0.6
    alive[0] = True
    keep = keep_positions(np, alive, 20 - 3)
    expect = np.stack([C[r][np.ix_(keep[r], keep[r])] for r in range(7)])
    np.testing.assert_array_equal(compact_inverse(np, C.copy(), keep), expect)
    A = C.copy()
    new = A.reshape(-1)[: 7 * 17 * 17].reshape(7, 17, 17)
    np.testing.assert_array_equal(gather_rows_(np, A, keep, new, temp_bytes=2 * 17 * 17 * 8), expect)


def test_row_batches_on_a_device_fill_the_memory():
    from onnxobc.solver.batching import DEFAULT_MEM, batch_memory, row_batches

    assert batch_memory(np, 512, 128) == DEFAULT_MEM
    cpu = row_batches(512, 4608, 4, 40 << 30)
    gpu = row_batches(512, 4608, 4, 40 << 30, step_elements=None)
    assert cpu[0].stop == 28  # the CPU caps a batch at 2^17 elements a step
    assert gpu[0].stop == 505 and len(gpu) == 2  # a device only by memory: 40 GiB / (4608² · 4 B)
