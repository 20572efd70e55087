"""How much of each activation's outliers to move into the weights (graph/smooth.py) before int8
activations: SmoothQuant's per-channel scales s_j = max|x_j|^α / max|w_j|^(1−α) (w_j: the j-th
input column of every layer that reads x), with α chosen per tensor by what it does to the layers'
outputs: for each candidate (no smoothing, each α of ALPHAS) the squared error
‖Q_a(X / s) · Q_w(diag(s) W) − X · W‖² over calibration rows, Q_a the activation quantization
(per batch for dynamic int8, as onnxruntime's DynamicQuantizeLinear; for static int8 one range,
the histogram's best on half of the sampled rows, the errors measured on the other half: a range
that flattened channels make tight fits the rows that set it and clips the rows that come later)
and Q_w rounding to a min/max grid per output channel (the solvers' own grids search shrunk
ranges: ten times the time here, for the same choices on all-MiniLM-L6-v2). The least is kept.

One calibration pass records each tensor's per-channel range per batch and a bounded sample of
its rows; the errors are then computed tensor by tensor."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..solver.grids import fit_uniform_grid
from .capture import passes
from .ranges import Histogram, fake_quantize

ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
ROWS = 2048  # calibration rows per tensor the errors are measured on
STATIC_ROWS = 1024  # the fewest sampled rows "auto" smooths a statically quantized tensor on: with fewer,
#                     the half that sets the range is too small to say how often later rows overflow it


def scales_for(alpha: float, x_max: np.ndarray, w_max: np.ndarray) -> np.ndarray:
    """SmoothQuant's per-channel divisors for migration strength `alpha`, normalised to a geometric
    mean of 1 (only their ratios matter); channels that are zero in x or w get the smallest."""
    x = np.maximum(x_max, 1e-6 * max(float(x_max.max(initial=0.0)), 1e-30))
    w = np.maximum(w_max, 1e-6 * max(float(w_max.max(initial=0.0)), 1e-30))
    s = x.astype(np.float64) ** alpha / w.astype(np.float64) ** (1 - alpha)
    return (s / np.exp(np.mean(np.log(s)))).astype(np.float32)


class _Sample:
    """One tensor's per-batch channel ranges and a sample of its rows (batch index kept)."""

    def __init__(self, per_batch: int):
        self.per_batch = per_batch
        self.lo, self.hi, self.rows, self.batch = [], [], [], []

    def add(self, x: np.ndarray) -> None:
        X = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
        self.lo.append(X.min(0))
        self.hi.append(X.max(0))
        take = np.unique(np.linspace(0, len(X) - 1, min(self.per_batch, len(X))).astype(int))
        self.rows.append(X[take])
        self.batch.append(np.full(len(take), len(self.lo) - 1))


def _errors(sample: _Sample, mats: list, candidates: list, dynamic: bool, symmetric: bool, weights) -> np.ndarray:
    X, batch = np.concatenate(sample.rows), np.concatenate(sample.batch)
    lo, hi = np.stack(sample.lo), np.stack(sample.hi)  # (batches, channels)
    fit = X
    if not dynamic and len(X) > 1:  # a static range is set on some rows and met by others at run time: half
        fit, X, batch = X[0::2], X[1::2], batch[1::2]  # the sample sets it, the other half measures the errors
    dense = [X @ W.T for W in mats]
    errors = np.zeros(len(candidates))
    for i, s in enumerate(candidates):
        Xs = X / s
        if dynamic:  # each batch's range, as DynamicQuantizeLinear takes it at run time
            Xq = np.empty_like(Xs)
            for b in np.unique(batch):
                at = batch == b
                Xq[at] = fake_quantize(Xs[at], float((lo[b] / s).min()), float((hi[b] / s).max()), symmetric)
        else:  # one range for all batches, clipped as the histogram's best range clips it
            h = Histogram(float((fit / s).min()), float((fit / s).max()))
            h.add(fit / s)
            Xq = fake_quantize(Xs, *h.best_range(symmetric), symmetric)
        for W, Y in zip(mats, dense):
            Ws = W * s[None, :]
            Wq = fit_uniform_grid(Ws, weights.bits, weights.symmetric, mse=False,
                                  per_tensor=weights.per_tensor).project(Ws.astype(np.float64))
            errors[i] += float(np.sum(np.square(Xq @ Wq.astype(np.float32).T - Y, dtype=np.float64)))
    return errors


@dataclasses.dataclass(frozen=True)
class WeightGrid:
    """How the layers' weights are quantized: bits, zero point 0, one grid per layer."""

    bits: int
    symmetric: bool = True
    per_tensor: bool = False


def choose_smoothing(model, readers: dict, arrays: dict, data: dict, batch_size: int, alpha, dynamic: bool,
                     symmetric: bool, weights: WeightGrid, custom_ops=(), progress=None,
                     tensor_progress=None) -> dict:
    """{tensor: (α, s)} for each tensor of `readers` ({tensor: [layers]}) that smoothing helps:
    `alpha` "auto" tries no smoothing and each of ALPHAS and keeps the least error (tensors where
    no smoothing wins, and statically quantized ones with under STATIC_ROWS rows, are left out),
    a number forces that α. `arrays`: {layer weight: its ONNX array}; `dynamic`: activations
    quantized per batch at run time, else over the calibration range; `symmetric`: the
    activations' grid. `progress(samples)` during the pass, `tensor_progress(done, total,
    tensor)` as the errors are measured."""
    n = len(next(iter(data.values())))
    batches = -(-n // batch_size) if n else 1
    per_batch = max(1, -(-ROWS // batches))
    samples = {t: _Sample(per_batch) for t in readers}
    for values in passes(model, list(samples), data, batch_size, custom_ops, progress):
        for t, v in values.items():
            samples[t].add(v)
    chosen = {}
    for k, (t, layers) in enumerate(readers.items()):
        if tensor_progress is not None:
            tensor_progress(k, len(readers), t)
        sample = samples.pop(t)
        if alpha == "auto" and not dynamic and sum(map(len, sample.rows)) < STATIC_ROWS:
            continue
        mats = [np.asarray(m, np.float32) for l in layers for m in l.matrices(arrays[l.weight])]
        x_max = np.maximum(np.abs(np.stack(sample.lo)).max(0), np.abs(np.stack(sample.hi)).max(0))
        w_max = np.max([np.abs(W).max(0) for W in mats], 0)
        alphas = ALPHAS if alpha == "auto" else (float(alpha),)
        candidates = [scales_for(a, x_max, w_max) for a in alphas]
        if alpha == "auto":
            errors = _errors(sample, mats, [np.ones_like(x_max)] + candidates, dynamic, symmetric, weights)
            best = int(np.argmin(errors))
            if best:
                chosen[t] = (alphas[best - 1], candidates[best - 1])
        else:
            chosen[t] = (alphas[0], candidates[0])
    if tensor_progress is not None:
        tensor_progress(len(readers), len(readers), "")
    return chosen
