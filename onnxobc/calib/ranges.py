"""Activation ranges for static int8 quantization: each tensor's calibration histogram, and the
clipping range whose 8-bit grid reproduces that histogram with the least squared error (a
clipped outlier costs less than a coarser grid for everything else; min/max is one candidate)."""

from __future__ import annotations

import numpy as np

from ..solver.grids import activation_grid

BINS = 2048


class Histogram:
    """Counts of a tensor's values in BINS equal bins over its calibration [lo, hi]."""

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0
        self.counts = np.zeros(BINS, np.int64)

    def add(self, values: np.ndarray) -> None:
        self.counts += np.histogram(values, BINS, (self.lo, self.hi))[0]

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
            qmin, qmax = (-128, 127) if symmetric else (0, 255)
            a, b = (qmin - zero) * scale, (qmax - zero) * scale
            clipped = np.clip(v, a, b)
            err = float(w @ ((clipped - v) ** 2 + np.where(clipped == v, scale * scale / 12, 0.0)))
            if err < best_err:
                best, best_err = (lo, hi), err
        return best
