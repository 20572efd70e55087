"""The CPU fast path: the deferred-downdate elimination with each greedy step fused into one
compiled loop per row (numba), rows in parallel.

The algorithm is that of `elimination.DeferredState`: between flushes, a row's current inverse is
base − UᵀU, its step needs the current row p (base row minus the pending vectors' correction) and
the current diagonal. Running a whole window of B steps row by row keeps that row's pending
vectors in cache, and the selection, weight, diagonal and pending-vector updates share one pass;
the flush (one in-place BLAS syrk per row, which keeps only the upper triangle of each inverse
current) and compaction stay in NumPy/BLAS. The NumPy/CuPy
`DeferredState` does the same work step-major (one array operation across rows per step), which
suits a GPU but streams every row's pending vectors from memory at every step on a CPU.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import sub_gram_upper_
from .elimination import compact_inverse, keep_positions

try:
    import numba
    from numba import njit, prange
except ImportError:  # the DeferredState path serves without it
    numba = None


if numba is not None:

    @njit(cache=True, inline="always")
    def _eliminate(Hr, Ur, nb, w, diag, alive, idx, out, row, p, t, tiny):
        d = w.shape[0]
        for j in range(p):  # only the upper triangle of Hr is current: row p is column p above it
            row[j] = Hr[j, p]
        for j in range(p, d):
            row[j] = Hr[p, j]
        for k in range(nb):
            c = Ur[k, p]
            if c != 0:
                for j in range(d):
                    row[j] -= c * Ur[k, j]
        dp = max(row[p], tiny)
        err = w[p] - t
        f = err / dp
        sq = math.sqrt(dp)
        for j in range(d):
            w[j] -= f * row[j]
            u = row[j] / sq
            diag[j] -= u * u
            Ur[nb, j] = u
        w[p] = t
        alive[p] = False
        out[idx[p]] = t
        return 0.5 * float(err) * float(err) / float(dp)

    @njit(cache=True, inline="always")
    def _step(Hinv, U, w, diag, alive, idx, out, order, inc, r, s, k0, p, t, tiny, rows_buf):
        """Record and apply step s of row r at position p (p < 0: the row is finished)."""
        if p < 0:
            for j in range(U.shape[2]):
                U[r, s, j] = 0
            order[r, k0 + s] = -1
            return
        order[r, k0 + s] = idx[r, p]
        inc[r, k0 + s] = _eliminate(Hinv[r], U[r], s, w[r], diag[r], alive[r], idx[r], out[r], rows_buf[r], p, t,
                                    tiny)

    @njit(cache=True, parallel=True)
    def _window_prune(Hinv, U, w, diag, alive, idx, out, order, inc, k0, nsteps, counts, m, limit, tiny, rows_buf):
        R, d = w.shape
        for r in prange(R):
            for s in range(nsteps):
                best = np.inf
                p = -1
                for j in range(d):
                    if alive[r, j] and (m == 0 or counts[r, idx[r, j] // m] < limit):
                        sc = w[r, j] * w[r, j] / max(diag[r, j], tiny)
                        if sc < best:
                            best = sc
                            p = j
                if m and p >= 0:
                    counts[r, idx[r, p] // m] += 1
                _step(Hinv, U, w, diag, alive, idx, out, order, inc, r, s, k0, p, w.dtype.type(0), tiny, rows_buf)

    @njit(cache=True, parallel=True)
    def _window_quant(Hinv, U, w, diag, alive, idx, out, order, inc, k0, nsteps, uniform, scale, zero, qmin, qmax,
                      mids, vals, lo, hi, outliers, tiny, rows_buf):
        R, d = w.shape
        G = vals.shape[1]
        for r in prange(R):
            for s in range(nsteps):
                has_out = False
                if outliers:
                    for j in range(d):
                        if alive[r, j] and (w[r, j] < lo[r] or w[r, j] > hi[r]):
                            has_out = True
                            break
                best = np.inf
                p = -1
                tq = w.dtype.type(0)
                for j in range(d):
                    if not alive[r, j]:
                        continue
                    v = w[r, j]
                    if has_out and not (v < lo[r] or v > hi[r]):
                        continue
                    if uniform:
                        q = (min(max(np.rint(v / scale[r]) + zero[r], qmin), qmax) - zero[r]) * scale[r]
                    else:
                        code = 0
                        for g in range(G - 1):
                            if v > mids[r, g]:
                                code += 1
                        q = vals[r, code]
                    e = q - v
                    sc = e * e / max(diag[r, j], tiny)
                    if sc < best:
                        best = sc
                        p = j
                        tq = q
                _step(Hinv, U, w, diag, alive, idx, out, order, inc, r, s, k0, p, tq, tiny, rows_buf)

    @njit(cache=True, parallel=True)
    def _window_blocks(Hinv, U, w, diag, alive, idx, out, order, inc, k0, nblocks, c, tiny, rows_buf):
        R, d = w.shape
        nblk = d // c
        for r in prange(R):
            D = np.empty((c, c), dtype=np.float64)
            L = np.empty((c, c), dtype=np.float64)
            y = np.empty(c, dtype=np.float64)
            for s in range(nblocks):
                nb = s * c
                best = np.inf
                bb = -1
                for b in range(nblk):
                    if not alive[r, b * c]:
                        continue
                    for i in range(c):
                        for j in range(i, c):
                            acc = 0.0
                            for k in range(nb):
                                acc += U[r, k, b * c + i] * U[r, k, b * c + j]
                            D[i, j] = Hinv[r, b * c + i, b * c + j] - acc
                    sc = 0.0
                    for j in range(c):
                        acc = 0.0
                        for k in range(j):
                            acc += L[j, k] * L[j, k]
                        t = D[j, j] - acc
                        L[j, j] = math.sqrt(t if t > tiny else tiny)
                        for i in range(j + 1, c):
                            acc = 0.0
                            for k in range(j):
                                acc += L[i, k] * L[j, k]
                            L[i, j] = (D[j, i] - acc) / L[j, j]
                        acc = 0.0
                        for k in range(j):
                            acc += L[j, k] * y[k]
                        y[j] = (w[r, b * c + j] - acc) / L[j, j]
                        sc += y[j] * y[j]
                    if sc < best:
                        best = sc
                        bb = b
                order[r, k0 + s] = idx[r, bb * c] // c
                total = 0.0
                for i in range(c):
                    total += _eliminate(Hinv[r], U[r], nb + i, w[r], diag[r], alive[r], idx[r], out[r], rows_buf[r],
                                        bb * c + i, w.dtype.type(0), tiny)
                inc[r, k0 + s] = total


def available() -> bool:
    return numba is not None


def run(policy, Hinv, w, alive, idx, cols, *, grid=None, flush_every=128, compact_frac=0.25):
    """Run `policy` (batching.Policy) to the end on a row batch of NumPy arrays; Hinv (R, d, d)
    is overwritten. Returns (weights (R, cols), order, inc) as policies.py does."""
    kind, n, m, block = policy.kind, policy.n, policy.m, policy.block
    outliers = policy.outliers
    R, d = w.shape
    dt = w.dtype.type
    tiny = dt(np.finfo(w.dtype).eps * np.abs(np.diagonal(Hinv, axis1=1, axis2=2)).mean())
    out = np.zeros((R, cols), dtype=w.dtype)
    if kind == "blocks":
        unit, total = block, d // block
        B = max(block, flush_every // block * block)
    else:
        unit, B = 1, flush_every
        total = {"prune": d, "nm": cols // m * (m - n) if m else 0, "quant": int(alive.sum(axis=1).max())}[kind]
    order = np.full((R, total), -1, dtype=np.int64)
    inc = np.zeros((R, total), dtype=np.float64)
    counts = np.zeros((R, max(1, cols // m) if m else 1), dtype=np.int32)
    if kind == "quant":
        g = _grid_arrays(grid, dt, R)
    diag = np.diagonal(Hinv, axis1=1, axis2=2).copy()
    done = 0
    while done < total:
        steps = min(B // unit, total - done)
        U = np.empty((R, steps * unit, w.shape[1]), dtype=w.dtype)
        rows_buf = np.empty((R, w.shape[1]), dtype=w.dtype)
        if kind == "quant":
            _window_quant(Hinv, U, w, diag, alive, idx, out, order, inc, done, steps, *g, outliers, tiny, rows_buf)
        elif kind == "blocks":
            _window_blocks(Hinv, U, w, diag, alive, idx, out, order, inc, done, steps, block, tiny, rows_buf)
        else:
            _window_prune(Hinv, U, w, diag, alive, idx, out, order, inc, done, steps, counts, m, m - n, tiny,
                          rows_buf)
        done += steps
        sub_gram_upper_(Hinv, U)
        keep_n = int(alive.sum(axis=1).max())
        if w.shape[1] - keep_n >= max(1, int(compact_frac * w.shape[1])) and done < total:
            keep = keep_positions(np, alive, keep_n)
            Hinv = compact_inverse(np, Hinv, keep)
            w, alive, idx = (np.ascontiguousarray(np.take_along_axis(a, keep, axis=1)) for a in (w, alive, idx))
        diag = np.diagonal(Hinv, axis1=1, axis2=2).copy()
    r, pos = np.nonzero(alive)
    out[r, idx[r, pos]] = w[r, pos]
    return out, order, inc


def _grid_arrays(grid, dt, R):
    from .grids import UniformGrid

    lo, hi = grid.bounds()
    lo, hi = np.asarray(lo, dtype=dt).ravel(), np.asarray(hi, dtype=dt).ravel()
    if isinstance(grid, UniformGrid):
        unused = np.zeros((R, 1), dtype=dt)  # mids and vals serve value grids only
        return (True, np.asarray(grid.scale, dtype=dt), np.asarray(grid.zero, dtype=dt), dt(grid.qmin),
                dt(grid.qmax), unused, unused, lo, hi)
    vals = np.asarray(grid.values, dtype=dt)
    mids = (vals[:, 1:] + vals[:, :-1]) / 2
    zero = np.zeros(R, dtype=dt)
    return False, zero, zero, dt(0), dt(0), np.ascontiguousarray(mids), np.ascontiguousarray(vals), lo, hi
