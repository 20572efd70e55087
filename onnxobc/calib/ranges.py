"""Activation ranges for static int8 quantization: each tensor's calibration histogram, and the
clipping range whose 8-bit grid reproduces that histogram with the least squared error (a
clipped outlier costs less than a coarser grid for everything else; min/max is one candidate).

For a tensor that layers read, what matters is not its own error but theirs: FedError sums, for
each candidate range (min/max, percentiles, the histogram's best), the squared error that
quantizing the tensor puts on the outputs of the layers it feeds, ‖(Q(X) − X)ᵀ W‖² over the
calibration samples, with the dense weights; the least of them is that tensor's range."""

from __future__ import annotations

import numpy as np

from ..solver.grids import activation_grid, code_range

BINS = 2048
PERCENTILES = (0.999, 0.9999, 0.99999)  # two-sided: the range from the (1 − p) to the p quantile


def fake_quantize(x: np.ndarray, lo: float, hi: float, symmetric: bool) -> np.ndarray:
    """x through QuantizeLinear and DequantizeLinear on the 8-bit grid of [lo, hi]."""
    scale, zero = activation_grid(lo, hi, symmetric)
    qmin, qmax = code_range(8, symmetric)
    q = np.clip(np.rint(x / np.float32(scale)) + zero, qmin, qmax)
    return ((q - zero) * np.float32(scale)).astype(x.dtype)


class Histogram:
    """Counts of a tensor's values in BINS equal bins over its calibration [lo, hi]."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0
        self.counts = np.zeros(BINS, np.int64)

    def add(self, values: np.ndarray) -> None:
        self.counts += np.histogram(values, BINS, (self.lo, self.hi))[0]

    def quantile(self, q: float) -> float:
        """The value below which a share `q` of the counted values lie, to a bin's width (the
        bin's outer edge: its upper one above the median, its lower one below)."""
        cum = np.cumsum(self.counts)
        edges = np.linspace(self.lo, self.hi, BINS + 1)
        i = int(np.searchsorted(cum, q * cum[-1]))
        return float(edges[min(i + 1, BINS) if q >= 0.5 else i])

    def candidates(self, symmetric: bool) -> list:
        """The ranges FedError chooses among: min/max, the PERCENTILES and best_range, one for
        each distinct 8-bit grid they give."""
        found = [(self.lo, self.hi)] + [(min(self.quantile(1 - p), 0.0), max(self.quantile(p), 0.0))
                                        for p in PERCENTILES] + [self.best_range(symmetric)]
        return list({activation_grid(lo, hi, symmetric): (lo, hi) for lo, hi in reversed(found)}.values())[::-1]

    def best_range(self, symmetric: bool, steps: int = 40) -> tuple:
        """The (lo, hi) among ranges shrunk towards 0 (each end separately when asymmetric) whose
        8-bit grid has the least expected squared error over the histogram: step²/12 for each value
        inside the range (rounding noise), the squared distance to the range for each value clipped."""
        edges = np.linspace(self.lo, self.hi, BINS + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        keep = self.counts > 0
        v, w = centers[keep], self.counts[keep].astype(np.float64)
        fractions = np.geomspace(1.0, 0.02, steps)
        if symmetric:
            amax = max(-self.lo, self.hi)
            candidates = [(-amax * f, amax * f) for f in fractions]
        else:
            candidates = [(self.lo * a, self.hi * b) for a in fractions for b in fractions]
        best, best_err = (self.lo, self.hi), np.inf
        for lo, hi in candidates:
            scale, zero = activation_grid(lo, hi, symmetric)
            qmin, qmax = code_range(8, symmetric)
            a, b = (qmin - zero) * scale, (qmax - zero) * scale
            clipped = np.clip(v, a, b)
            err = float(w @ ((clipped - v) ** 2 + np.where(clipped == v, scale * scale / 12, 0.0)))
            if err < best_err:
                best, best_err = (lo, hi), err
        return best


class FedError:
    """For one tensor: the squared error that quantizing it to each candidate range puts on the
    outputs of the layers it feeds, summed over the calibration batches given to add()."""

    def __init__(self, candidates: list, symmetric: bool, readers: list):
        self.candidates, self.symmetric = candidates, symmetric
        self.readers = readers  # (to_samples(x) → one sample matrix per group, [W per group] (rows × cols))
        self.errors = np.zeros(len(candidates))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        for i, (lo, hi) in enumerate(self.candidates):
            d = fake_quantize(x, lo, hi, self.symmetric) - x
            for to_samples, mats in self.readers:
                for D, W in zip(to_samples(d), mats):
                    self.errors[i] += float(np.sum(np.square(D @ W.T, dtype=np.float64)))

    def best(self) -> tuple:
        return self.candidates[int(np.argmin(self.errors))]
