"""Grids that are fitted, not uniform: a K-value codebook per layer (or per row), binary {−c, c}
and ternary {−c, 0, c} per row. Each is fitted to W weighted by diag(H), then the weights are
placed on it by OBQ (quant.quantize with a ValueGrid), and the values are refitted to the codes
exactly on the layer objective: with the codes fixed, Ŵ is linear in the values, so the best
values solve a small least-squares problem in the H metric.

k-means values suit round-to-nearest but leave wide gaps in the tails, which OBQ's updates
reach; so `codebook` also starts from the uniform grid of the same size and keeps the better
result (never worse than uniform OBQ, usually clearly better after the refit)."""

from __future__ import annotations

import numpy as np

from .checks import check_problem
from .grids import ValueGrid, fit_uniform_grid
from .hessian import row_losses
from .quant import quantize
from .result import Result


def _strictly_increasing(v: np.ndarray) -> np.ndarray:
    """Sorted values nudged apart where k-means left equal ones (an empty cluster)."""
    v = np.sort(v)
    gap = max(np.abs(v).max(), 1e-12) * 1e-6
    for j in range(1, len(v)):
        v[j] = max(v[j], v[j - 1] + gap)
    return v


def weighted_kmeans(values: np.ndarray, weights: np.ndarray, k: int, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means in one dimension with weighted points; starts from weighted quantiles.
    Returns k strictly increasing centres."""
    v, w = np.ravel(values).astype(np.float64), np.ravel(weights).astype(np.float64)
    order = np.argsort(v)
    v, w = v[order], w[order]
    cw = np.cumsum(w)
    centres = v[np.minimum(np.searchsorted(cw, (np.arange(k) + 0.5) / k * cw[-1]), len(v) - 1)]
    centres = _strictly_increasing(centres)
    for _ in range(iters):
        edges = (centres[1:] + centres[:-1]) / 2
        label = np.searchsorted(edges, v)
        mass = np.bincount(label, w, k)
        new = np.where(mass > 0, np.bincount(label, w * v, k) / np.where(mass > 0, mass, 1), centres)
        new = _strictly_increasing(new)
        if np.allclose(new, centres, rtol=0, atol=1e-12 * max(1.0, np.abs(v).max())):
            break
        centres = new
    return centres


def codebook_grid(W, H, k: int, per_row: bool = False) -> ValueGrid:
    """A K-value grid from k-means of W's entries weighted by the Hessian diagonal (the loss of
    moving w_ij alone is H_jj (Δw)²/2): one codebook for the layer, or one per row."""
    W, H = check_problem(W, H)
    if not 2 <= k <= 256:
        raise ValueError(f"a codebook needs 2 to 256 values, got {k}")
    d = np.broadcast_to(np.diag(H), W.shape)
    if per_row:
        return ValueGrid(np.stack([weighted_kmeans(W[i], d[i], k) for i in range(W.shape[0])]))
    return ValueGrid(np.tile(weighted_kmeans(W, d, k), (W.shape[0], 1)))


def sign_grid(W, H, ternary: bool) -> ValueGrid:
    """Per row {−c, c} (binary) or {−c, 0, c} (ternary), c and the ternary threshold chosen to
    minimise the diag(H)-weighted rounding error."""
    W, H = check_problem(W, H)
    d = np.diag(H)
    a = np.abs(W.astype(np.float64))
    c = np.empty(W.shape[0])
    for i in range(W.shape[0]):
        if not ternary:
            c[i] = (d * a[i]).sum() / d.sum()
            continue
        order = np.argsort(-a[i])  # keep the t largest |w| as ±c: c = weighted mean of those
        num, den = np.cumsum(d[order] * a[i][order]), np.cumsum(d[order])
        # error of keeping t: Σ d w² − num_t² / den_t, so the best t maximises num_t² / den_t
        t = np.argmax(num ** 2 / den)
        c[i] = num[t] / den[t]
    c = np.maximum(c, 1e-12)
    return ValueGrid(np.stack([-c, np.zeros_like(c), c], axis=1) if ternary else np.stack([-c, c], axis=1))


def refit_values(W, H, codes: np.ndarray, grid: ValueGrid, shared: bool, mem_bytes: int = 1 << 26) -> ValueGrid:
    """The grid values that minimise tr((W − Ŵ) H (W − Ŵ)ᵀ) for fixed codes: per row, or one set
    for all rows when `shared`. With E_i the one-hot (values × cols) of row i's codes, row i
    needs G_i = E_i H E_iᵀ and b_i = E_i H w_i (rows × values × cols² work, done in row chunks).
    Values whose order the refit would break keep the old grid."""
    W, H = np.asarray(W, np.float64), np.asarray(H, np.float64)
    rows, cols = W.shape
    k = grid.values.shape[1]
    G, b = np.empty((rows, k, k)), np.empty((rows, k))
    step = max(1, mem_bytes // (16 * k * cols))
    for start in range(0, rows, step):
        c = codes[start:start + step]
        E = np.zeros((len(c), k, cols))
        np.put_along_axis(E, c[:, None, :], 1.0, axis=1)
        EH = E @ H
        G[start:start + step] = EH @ E.transpose(0, 2, 1)
        b[start:start + step] = np.einsum("igj,ij->ig", EH, W[start:start + step])
    used = np.einsum("igg->ig", G) > 0
    ridge = 1e-9 * np.maximum(np.einsum("igg->ig", G).max(axis=1), 1e-300)
    if shared:
        v = np.linalg.lstsq(G.sum(axis=0) + ridge.max() * np.eye(k), b.sum(axis=0), rcond=None)[0]
        values = np.tile(v, (rows, 1))
        used = np.broadcast_to(used.any(axis=0), used.shape)
    else:
        values = np.stack([np.linalg.lstsq(G[i] + ridge[i] * np.eye(k), b[i], rcond=None)[0] for i in range(rows)])
    values = np.where(used, values, grid.values)  # unused values: nothing to fit
    ok = np.all(np.diff(values, axis=1) > 0, axis=1)
    if shared:
        ok[:] = ok.all()
    return ValueGrid(np.where(ok[:, None], values, grid.values))


def refit_scales(W, H, codes: np.ndarray, grid: ValueGrid) -> ValueGrid:
    """Binary/ternary: each row's c minimising tr((W − Ŵ) H (W − Ŵ)ᵀ) with its signs fixed,
    c_i = s_iᵀ H w_i / s_iᵀ H s_i (rows whose signs are all 0, or whose c would not be positive,
    keep theirs)."""
    W, H = np.asarray(W, np.float64), np.asarray(H, np.float64)
    c = grid.values[:, -1]
    signs = np.take_along_axis(grid.values, codes, axis=1) / c[:, None]
    SH = signs @ H
    num, den = np.einsum("ij,ij->i", SH, W), np.einsum("ij,ij->i", SH, signs)
    new = np.where(den > 0, num / np.where(den > 0, den, 1.0), c)
    new = np.where(new > 0, new, c)
    return ValueGrid(grid.values / c[:, None] * new[:, None])


def quantize_fitted(W, H, grid: ValueGrid, kind: str, method: str = "exact", rounds: int = 2, **engine) -> Result:
    """OBQ (or `method`) onto `grid`, then alternate: refit the grid to the codes, requantize;
    keeps the best result. `kind`: "shared" (one codebook for all rows), "rows" (a codebook per
    row) or "sign" (binary/ternary: one scale per row)."""
    W, H = check_problem(W, H)
    if kind not in ("shared", "rows", "sign"):
        raise ValueError(f"kind must be shared, rows or sign, got {kind!r}")
    best = quantize(W, H, grid, method=method, **engine)
    for _ in range(rounds):
        refit = refit_scales(W, H, best.codes, best.grid) if kind == "sign" else \
            refit_values(W, H, best.codes, best.grid, kind == "shared")
        W_hat = refit.dequantize(best.codes)
        rl = row_losses(W, W_hat, H)
        if rl.sum() >= best.loss:
            break
        best = Result(weight=W_hat, loss=float(rl.sum()), row_loss=rl, codes=best.codes, grid=refit)
        again = quantize(W, H, refit, method=method, **engine)
        if again.loss < best.loss:
            best = again
    return best


def codebook(W, H, k: int, per_row: bool = False, method: str = "exact", **engine) -> Result:
    """A K-value codebook for the layer (or one per row) by OBQ with refits, from k-means and,
    when K is a power of two, from the uniform grid; the better of the two."""
    W, H = check_problem(W, H)
    kind = "rows" if per_row else "shared"
    starts = [codebook_grid(W, H, k, per_row)]
    bits = int(np.log2(k))
    if 2 ** bits == k and 2 <= bits <= 8:
        u = fit_uniform_grid(W if per_row else W.reshape(1, -1), bits)
        values = (np.arange(u.qmin, u.qmax + 1)[None, :] - u.zero[:, None]) * u.scale[:, None]
        starts.append(ValueGrid(values if per_row else np.tile(values, (W.shape[0], 1))))
    results = [quantize_fitted(W, H, g, kind, method, **engine) for g in starts]
    return min(results, key=lambda r: r.loss)
