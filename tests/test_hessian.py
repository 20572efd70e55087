import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxobc.solver import HessianAccumulator, inverse, layer_loss, prepare


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), cols=st.integers(1, 8), cuts=st.lists(st.integers(0, 60), max_size=5),
       seed=st.integers(0, 1000))
def test_independent_of_batch_split(n, cols, cuts, seed):
    X = np.random.default_rng(seed).standard_normal((n, cols)).astype(np.float32)
    whole = HessianAccumulator(cols)
    whole.add_batch(X)
    parts = HessianAccumulator(cols)
    for chunk in np.split(X, sorted(c % (n + 1) for c in cuts)):
        if len(chunk):
            parts.add_batch(chunk)
    np.testing.assert_allclose(parts.hessian, whole.hessian, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole.hessian, 2 / n * X.astype(np.float64).T @ X, rtol=1e-12, atol=1e-12)
    assert whole.hessian.dtype == np.float64 and parts.samples == n


def test_loss_is_output_error():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    acc = HessianAccumulator(6)
    acc.add_batch(X)
    W, W_hat = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    assert layer_loss(W, W_hat, acc.hessian) == pytest.approx(np.sum(((W - W_hat) @ X.T) ** 2) / 200)


def test_dampening_and_dead_inputs():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 5))
    X[:, 2] = 0
    acc = HessianAccumulator(5)
    acc.add_batch(X)
    H0 = acc.hessian
    W = rng.standard_normal((4, 5)).astype(np.float32)
    W2, H = prepare(W, H0, damp=0.05)
    assert np.all(W2[:, 2] == 0) and np.all(W[:, 2] != 0), "input W is not modified"
    live = [0, 1, 3, 4]
    mean_diag = np.mean(np.r_[np.diag(H0)[live], 1.0])
    np.testing.assert_allclose(np.diag(H)[live], np.diag(H0)[live] + 0.05 * mean_diag)
    assert H[2, 2] == pytest.approx(1 + 0.05 * mean_diag)
    assert np.all(H[2, live] == 0)
    np.linalg.cholesky(H)
    # the dead column changes no output: the loss of zeroing it is 0 under the raw H
    assert layer_loss(W, W2, H0) == pytest.approx(0, abs=1e-12)


def test_errors():
    acc = HessianAccumulator(3)
    with pytest.raises(ValueError, match="no samples"):
        acc.hessian
    with pytest.raises(ValueError, match=r"\(samples, 3\)"):
        acc.add_batch(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        acc.add_batch(np.array([[1.0, np.nan, 0]]))
    with pytest.raises(ValueError, match="every input"):
        prepare(np.ones((2, 3), np.float32), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="positive definite"):
        inverse(np.diag([1.0, -1.0]))


def test_pickled_accumulator_holds_host_arrays():
    """A Problem's accumulators travel to a cluster's workers: they pickle with plain pickle, as
    host arrays, and go on summing after."""
    import pickle

    rng = np.random.default_rng(5)
    acc = HessianAccumulator(6, "auto")
    acc.add_batch(rng.standard_normal((10, 6)))
    back = pickle.loads(pickle.dumps(acc))
    assert isinstance(back._sum, np.ndarray)
    np.testing.assert_array_equal(back.hessian, acc.hessian)
    X = rng.standard_normal((4, 6))
    back.add_batch(X)
    acc.add_batch(X)
    np.testing.assert_array_equal(back.hessian, acc.hessian)
