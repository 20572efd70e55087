"""Per-row quantization grids: uniform b-bit grids (symmetric or asymmetric, range chosen by an
MSE search over shrunk ranges) and arbitrary sorted value grids (codebooks, ternary, binary).

A grid knows how to project values onto itself, which values are outliers (further than half a
grid step outside its range; OBQ quantizes those first), and how to turn on-grid values into
integer codes. Methods take `rows`, the layer rows the values belong to, so that one grid object
serves row batches; arrays may be NumPy or CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import xp_of
from .checks import check_weight

MIN_BITS, MAX_BITS = 2, 8


def _col(a, rows, xp):
    """Per-row parameters for `rows` as a column (R, 1) on the module of the values."""
    a = a if rows is None else a[rows]
    return xp.asarray(a).reshape(-1, 1)


def _outside(v, lo, hi):
    xp = xp_of(v)
    lo, hi = xp.asarray(lo).astype(v.dtype).reshape(-1, 1), xp.asarray(hi).astype(v.dtype).reshape(-1, 1)
    return (v < lo) | (v > hi)


@dataclass
class UniformGrid:
    """Values scale · (q − zero) for integer codes q in [qmin, qmax], one scale/zero per row."""

    scale: np.ndarray  # (rows,)
    zero: np.ndarray  # (rows,), integer-valued
    qmin: int
    qmax: int
    bits: int
    symmetric: bool

    def _params(self, v, rows):
        xp = xp_of(v)
        return xp, _col(self.scale, rows, xp).astype(v.dtype), _col(self.zero, rows, xp).astype(v.dtype)

    def codes(self, v, rows=None):
        xp, s, z = self._params(v, rows)
        return xp.clip(xp.rint(v / s) + z, self.qmin, self.qmax).astype(np.int32)

    def project(self, v, rows=None):
        xp, s, z = self._params(v, rows)
        return s * (xp.clip(xp.rint(v / s) + z, self.qmin, self.qmax) - z)

    def bounds(self, rows=None):
        """(lo, hi) per row: values below lo or above hi are further than half a step off the grid."""
        s = self.scale if rows is None else self.scale[rows]
        z = self.zero if rows is None else self.zero[rows]
        return s * (self.qmin - z) - s / 2, s * (self.qmax - z) + s / 2

    def outlier(self, v, rows=None):
        return _outside(v, *self.bounds(rows))

    def dequantize(self, codes, rows=None):
        xp = xp_of(codes)
        s, z = _col(self.scale, rows, xp), _col(self.zero, rows, xp)
        return (s * (codes - z)).astype(np.float32)

    def scaled(self, ratio) -> "UniformGrid":
        """The same codes with each row's values multiplied by ratio[row] (> 0)."""
        return UniformGrid(self.scale * ratio, self.zero, self.qmin, self.qmax, self.bits, self.symmetric)

    def take(self, rows, xp=np):
        return UniformGrid(xp.asarray(self.scale[rows]), xp.asarray(self.zero[rows]),
                           self.qmin, self.qmax, self.bits, self.symmetric)


@dataclass
class ValueGrid:
    """An arbitrary sorted grid per row: values (rows, G), G ≥ 2, ascending along each row."""

    values: np.ndarray

    def __post_init__(self):
        v = np.asarray(self.values) if isinstance(self.values, (list, tuple)) else self.values
        if v.ndim != 2 or v.shape[1] < 2:
            raise ValueError(f"a value grid needs shape (rows, G) with G >= 2, got {v.shape}")
        xp = xp_of(v)
        if not bool(xp.isfinite(v).all()):
            raise ValueError("grid values contain NaN or Inf")
        if bool((xp.diff(v, axis=1) <= 0).any()):
            raise ValueError("grid values must be strictly increasing along each row")
        self.values = v

    def codes(self, v, rows=None):
        xp = xp_of(v)
        g = xp.asarray(self.values if rows is None else self.values[rows]).astype(v.dtype)
        # midpoints between neighbours: the code is the number of midpoints below the value
        mid = (g[:, 1:] + g[:, :-1]) / 2
        codes = xp.zeros(v.shape, dtype=np.int32)
        for j in range(mid.shape[1]):
            codes += v > mid[:, j : j + 1]
        return codes

    def project(self, v, rows=None):
        xp = xp_of(v)
        g = xp.asarray(self.values if rows is None else self.values[rows]).astype(v.dtype)
        return xp.take_along_axis(g, self.codes(v, rows), axis=1)

    def bounds(self, rows=None):
        """(lo, hi) per row: values below lo or above hi are further than half the end gap off the grid."""
        g = self.values if rows is None else self.values[rows]
        return g[:, 0] - (g[:, 1] - g[:, 0]) / 2, g[:, -1] + (g[:, -1] - g[:, -2]) / 2

    def outlier(self, v, rows=None):
        return _outside(v, *self.bounds(rows))

    def dequantize(self, codes, rows=None):
        xp = xp_of(codes)
        g = xp.asarray(self.values if rows is None else self.values[rows])
        return xp.take_along_axis(g, codes, axis=1).astype(np.float32)

    def scaled(self, ratio) -> "ValueGrid":
        """The same codes with each row's values multiplied by ratio[row] (> 0)."""
        return ValueGrid(self.values * np.asarray(ratio).reshape(-1, 1))

    def take(self, rows, xp=np):
        return ValueGrid(xp.asarray(self.values[rows]))


def activation_grid(lo: float, hi: float, symmetric: bool):
    """(scale, zero point) of the 8-bit grid covering [lo, hi] ∪ {0}: uint8 asymmetric, or int8
    symmetric with zero point 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        scale = max(-lo, hi) / 127.0
        return (scale if scale > 0 else 1.0), 0
    scale = (hi - lo) / 255.0
    if scale <= 0:
        return 1.0, 0
    return scale, int(np.clip(np.rint(-lo / scale), 0, 255))


def code_range(bits: int, symmetric: bool, narrow: bool = False) -> tuple[int, int]:
    if not (isinstance(bits, (int, np.integer)) and MIN_BITS <= bits <= MAX_BITS):
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    if symmetric:
        half = 2 ** (bits - 1)
        return (-(half - 1) if narrow else -half), half - 1
    return 0, 2**bits - 1


def fit_uniform_grid(W, bits: int, symmetric: bool = True, *, mse: bool = True, narrow: bool = False,
                     steps: int = 100, max_shrink: float = 0.8, per_tensor: bool = False) -> UniformGrid:
    """One uniform grid per row of W (with `per_tensor`, one grid for the whole of W, repeated
    for every row: the range and the shrink factor are W's, the error summed over all rows).

    Symmetric grids have zero point 0 and signed codes [−2^(b−1), 2^(b−1) − 1] ([−(2^(b−1) − 1), …]
    with `narrow`); asymmetric grids have codes [0, 2^b − 1] and an integer zero point, and always
    contain 0. With `mse`, each row's range is shrunk by the factor in {1, 1 − 1/steps, …,
    1 − max_shrink} that minimises that row's squared rounding error.
    """
    W = check_weight(W).astype(np.float64)
    qmin, qmax = code_range(bits, symmetric, narrow)
    if not 0 <= max_shrink < 1:
        raise ValueError(f"max_shrink must be in [0, 1), got {max_shrink}")
    lo = np.minimum(W.min(axis=1), 0)
    hi = np.maximum(W.max(axis=1), 0)
    if per_tensor:
        lo, hi = np.full_like(lo, lo.min(initial=0.0)), np.full_like(hi, hi.max(initial=0.0))

    def grid_at(p):
        if symmetric:
            amax = np.maximum(-lo, hi) * p
            span = (qmax - qmin) / 2 if not narrow else qmax
            scale = amax / span
            zero = np.zeros_like(scale)
        else:
            scale = (hi - lo) * p / (qmax - qmin)
            zero = None
        scale = np.where(scale > 0, scale, 1.0)
        if zero is None:
            zero = np.clip(np.rint(qmin - lo * p / scale), qmin, qmax)
        return UniformGrid(scale, zero, qmin, qmax, bits, symmetric)

    best = grid_at(1.0)
    if not mse:
        return best
    def error(g):  # ((g.project(W) - W) ** 2).sum(axis=1), in place: a few passes over one buffer
        s, z = g.scale.reshape(-1, 1), g.zero.reshape(-1, 1)
        q = np.divide(W, s, out=buf)
        np.rint(q, out=q)
        q += z
        np.clip(q, qmin, qmax, out=q)
        q -= z
        q *= s
        q -= W
        err = np.einsum("ij,ij->i", q, q)
        return np.full_like(err, err.sum()) if per_tensor else err

    buf = np.empty_like(W)

    best_err = error(best)
    for i in range(1, int(max_shrink * steps) + 1):
        g = grid_at(1 - i / steps)
        err = error(g)
        better = err < best_err
        best.scale = np.where(better, g.scale, best.scale)
        best.zero = np.where(better, g.zero, best.zero)
        best_err = np.where(better, err, best_err)
    return best
