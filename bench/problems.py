"""Realistic layer problems for benchmarks: W heavy-tailed, H from correlated ReLU inputs with
more samples than columns (a decaying spectrum, as real activations have)."""

from __future__ import annotations

import numpy as np

from onnxobc.solver import HessianAccumulator, prepare


def layer_problem(rows: int, cols: int, seed: int = 0, samples_per_col: float = 2.0, damp: float = 0.01):
    rng = np.random.default_rng(seed)
    k = min(cols, 512)
    spectrum = (1.0 + np.arange(k)) ** -0.7
    mix = (rng.standard_normal((k, cols)) * spectrum[:, None]).astype(np.float32)
    acc = HessianAccumulator(cols)
    n = int(samples_per_col * cols)
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        z = rng.standard_normal((m, k)).astype(np.float32) @ mix + 0.05 * rng.standard_normal((m, cols)).astype(np.float32)
        acc.add_batch(np.maximum(z + 0.1, 0))
    W = (rng.standard_t(4, (rows, cols)) * 0.02).astype(np.float32)
    return prepare(W, acc.hessian, damp=damp)
