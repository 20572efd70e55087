"""CuPy and NumPy take the same decisions (run on a GPU machine with: pytest -m gpu)."""

import numpy as np
import pytest
from oracles import make_problem

from onnxobc.solver import fit_uniform_grid, prune_blocks, prune_nm, prune_unstructured, quantize

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _needs_cuda():
    from onnxobc.solver.backend import _cupy

    if _cupy() is None:
        pytest.skip("CuPy with a CUDA device is not available")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_matches_numpy(dtype):
    W, H = make_problem(64, 256, seed=31)
    grid = fit_uniform_grid(W, 4, True)
    for fn in (lambda **k: quantize(W, H, grid, **k), lambda **k: prune_nm(W, H, 2, 4, **k),
               lambda **k: prune_blocks(W, H, [0.5], **k)[0], lambda **k: prune_unstructured(W, H, [0.5], **k)[0]):
        cpu, gpu = fn(device="cpu", dtype=dtype), fn(device="cuda", dtype=dtype)
        if dtype == np.float64:
            np.testing.assert_array_equal(cpu.order, gpu.order)
        assert gpu.loss == pytest.approx(cpu.loss, rel=1e-6 if dtype == np.float64 else 1e-3)
