"""Greedy OBS elimination state for a batch of rows, in two interchangeable forms.

Each row r of W has its own inverse Hessian, which starts as H⁻¹ (or the inverse of H restricted
to the row's unmasked columns) and loses one column per OBS step (Lemma 1 of the OBC paper):

    H⁻¹ ← H⁻¹ − H⁻¹[:, p] H⁻¹[p, :] / H⁻¹[p, p] = H⁻¹ − u uᵀ,   u = H⁻¹[:, p] / √H⁻¹[p, p]
    w   ← w − (w_p − t) / H⁻¹[p, p] · H⁻¹[:, p],   loss += (w_p − t)² / (2 H⁻¹[p, p])

`EagerState` applies every downdate at once, in place (the reference algorithm, memory-bound):
it is the oracle. `DeferredState` keeps the last downdates as pending vectors U and rebuilds what
a step needs from them: the current row H⁻¹[p, :] − U[:, p]ᵀ U and the current diagonal; every
B steps it applies H⁻¹ −= UᵀU as one GEMM, and between steps it drops eliminated columns once
they are a fair share of the width (compaction). It takes the same decisions as the oracle and
its work is matrix-multiply bound. It runs on NumPy or CuPy; fused.py is the CPU's faster form.

Selection policies (policies.py) drive either state through `eliminate`, `w`, `alive`, `idx`,
`safe_diag()` and `diag_blocks()`, and call `checkpoint()` after each whole step (the only time
positions may move).
"""

from __future__ import annotations

import numpy as np

from .backend import TEMP_BYTES, row_chunk, sub_gram_, xp_of
from .hessian import inverse


class _State:
    def __init__(self, Hinv, w, alive, idx, cols: int):
        xp = self.xp = xp_of(Hinv)
        self.Hinv = Hinv  # (R, d, d)
        self.w = w  # (R, d) current weights at each position
        self.alive = alive  # (R, d) not yet eliminated
        self.idx = idx  # (R, d) original column of each position
        self.R = w.shape[0]
        self.ar = xp.arange(self.R)
        self.out = xp.zeros((self.R, cols), dtype=w.dtype)
        self.tiny = float(xp.finfo(w.dtype).eps) * float(xp.abs(xp.diagonal(Hinv, axis1=1, axis2=2)).mean())

    def safe_diag(self):
        return self.xp.maximum(self.diag, self.tiny)

    def eliminate(self, p, t, active=None):
        """Fix position p[r] of each row r at value t[r] with the optimal update of the rest;
        rows where `active` is False are left untouched. Returns the loss increment per row."""
        xp, ar = self.xp, self.ar
        row = self.current_row(p)
        dp = xp.maximum(row[ar, p], self.tiny)
        err = self.w[ar, p] - t
        if active is not None:
            err = xp.where(active, err, 0)
        self.w -= (err / dp)[:, None] * row
        u = row / xp.sqrt(dp)[:, None]
        if active is not None:
            u *= active[:, None]
            t = xp.where(active, t, self.w[ar, p])
        self.w[ar, p] = t
        kill = self.alive[ar, p] if active is None else self.alive[ar, p] & active
        self.alive[ar, p] &= ~kill
        col = self.idx[ar, p]
        self.out[ar, col] = xp.where(kill, t, self.out[ar, col])
        self._downdate(u)
        return 0.5 * err * err / dp

    def weights(self):
        """The row batch's weights in original column order: fixed values where eliminated,
        current values where alive, zero for columns masked from the start."""
        out = self.out.copy()
        r, pos = self.xp.nonzero(self.alive)
        out[r, self.idx[r, pos]] = self.w[r, pos]
        return out

    def _block_index(self, c):
        xp = self.xp
        nblk = self.w.shape[1] // c
        base = xp.arange(nblk)[:, None, None] * c
        i = xp.arange(c)
        return base + i[None, :, None], base + i[None, None, :]

    def base_blocks(self, c):
        I, J = self._block_index(c)
        return self.Hinv[:, I, J]  # (R, nblk, c, c)


class EagerState(_State):
    """The oracle: every downdate applied to the full (R, d, d) inverse immediately."""

    def __init__(self, Hinv, w, alive, idx, cols: int):
        super().__init__(Hinv, w, alive, idx, cols)

    @property
    def diag(self):
        return self.xp.diagonal(self.Hinv, axis1=1, axis2=2)

    def current_row(self, p):
        return self.Hinv[self.ar, p, :].copy()

    def _downdate(self, u):
        sub_gram_(self.Hinv, u[:, None, :])  # rank-1, in place

    def diag_blocks(self, c):
        return self.base_blocks(c)

    def checkpoint(self):
        pass


class DeferredState(_State):
    """The fast path: downdates deferred into rank-B GEMM flushes, eliminated columns compacted."""

    def __init__(self, Hinv, w, alive, idx, cols: int, flush_every: int = 128, compact_frac: float = 0.25):
        super().__init__(Hinv, w, alive, idx, cols)
        self.B = flush_every
        self.compact_frac = compact_frac
        self.U = self.xp.empty((self.R, self.B, w.shape[1]), dtype=w.dtype)
        self.nb = 0
        self.diag = self.xp.diagonal(Hinv, axis1=1, axis2=2).copy()
        self.alive_bound = w.shape[1]

    def current_row(self, p):
        row = self.Hinv[self.ar, p, :]
        if self.nb:
            coef = self.U[self.ar, : self.nb, p]  # (R, nb)
            row -= self.xp.matmul(coef[:, None, :], self.U[:, : self.nb, :])[:, 0, :]
        return row

    def _downdate(self, u):
        self.alive_bound = max(0, self.alive_bound - 1)
        self.diag -= u * u
        self.U[:, self.nb, :] = u
        self.nb += 1
        if self.nb == self.B:
            self.flush()

    def diag_blocks(self, c):
        D = self.base_blocks(c)
        if self.nb:
            nblk = self.w.shape[1] // c
            Ub = self.U[:, : self.nb, :].reshape(self.R, self.nb, nblk, c)
            D -= self.xp.einsum("rbki,rbkj->rkij", Ub, Ub)
        return D

    def flush(self):
        sub_gram_(self.Hinv, self.U[:, : self.nb, :])
        self.nb = 0
        self.diag = self.xp.diagonal(self.Hinv, axis1=1, axis2=2).copy()

    def checkpoint(self):
        """Between whole policy steps: drop eliminated positions once they are a `compact_frac`
        share of the stored width.

        The rows' largest alive count is read from the device only when a compaction looks due:
        every step fixes one position in each row that has any left (the policies pick an alive
        one wherever a row has one), so `alive_bound`, counted on the host, is that count unless
        a row stalled; the read corrects it then."""
        d = self.w.shape[1]
        due = max(1, int(self.compact_frac * d))
        if d - self.alive_bound >= due:
            self.alive_bound = self.read_alive_max()
            if d - self.alive_bound >= due:
                self.compact(self.alive_bound)

    def read_alive_max(self) -> int:
        """The rows' largest alive count (on a GPU, a wait for the device)."""
        return int(self.alive.sum(axis=1).max())

    def compact(self, keep_n: int):
        """Drop eliminated positions from the base inverse and the pending vectors alike (the
        current inverse, base − UᵀU, restricts entrywise), keeping the order of the rest so that
        blocks stay aligned. Rows with fewer alive positions keep some eliminated ones as
        padding: their rows and columns of H⁻¹ are zero, so they change nothing."""
        xp = self.xp
        keep = keep_positions(xp, self.alive, keep_n)
        self.Hinv = compact_inverse(xp, self.Hinv, keep)
        self.w, self.alive, self.idx, self.diag = (xp.ascontiguousarray(xp.take_along_axis(a, keep, axis=1))
                                                   for a in (self.w, self.alive, self.idx, self.diag))
        U = xp.empty((self.R, self.B, keep_n), dtype=self.w.dtype)
        U[:, : self.nb, :] = xp.take_along_axis(self.U[:, : self.nb, :], keep[:, None, :], axis=2)
        self.U = U


def keep_positions(xp, alive, keep_n):
    """Per row, the first `keep_n` positions with the alive ones first, in their original order."""
    stable = {"kind": "stable"} if xp is np else {}  # CuPy's sorts are always stable
    return xp.sort(xp.argsort(~alive, axis=1, **stable)[:, :keep_n], axis=1)


def compact_inverse(xp, Hinv, keep, temp_bytes: int = TEMP_BYTES):
    """Hinv[r][keep[r]][:, keep[r]] for every r, written in place into Hinv's own memory: the
    compacted rows before r land before old row r, which is still to be read. NumPy takes row
    by row (its fancy-index gather is slower); a device gathers a chunk of rows per kernel."""
    R, k = keep.shape
    new = Hinv.reshape(-1)[: R * k * k].reshape(R, k, k)
    if xp is np:
        for r in range(R):
            new[r] = np.take(np.take(Hinv[r], keep[r], axis=0), keep[r], axis=1)
        return new
    return gather_rows_(xp, Hinv, keep, new, temp_bytes)


def gather_rows_(xp, Hinv, keep, new, temp_bytes: int):
    """compact_inverse's device form: one gather per chunk of rows, its temporary within `temp_bytes`."""
    step = row_chunk(new, temp_bytes)
    for a in range(0, keep.shape[0], step):
        kk = keep[a: a + step]
        new[a: a + step] = Hinv[a: a + step][xp.arange(len(kk))[:, None, None], kk[:, :, None], kk[:, None, :]]
    return new


def start_rows(H, Hinv, W_rows, mask_rows=None, xp=np, dtype=np.float32, buffer=None):
    """The starting state of a row batch: (Hinv (R,d,d), w, alive, idx, loss0 per row).
    The per-row inverses are written into `buffer` (flat, of `dtype`) when it is big enough, so
    that batches reuse memory instead of touching fresh pages.

    Without a mask every row starts from the shared H⁻¹. With a mask (True = kept), each row's
    pruned columns are eliminated in bulk: w_K ← w_K + (H_KK)⁻¹ H_KP w_P, the inverse becomes
    (H_KK)⁻¹, and loss0 is that step's loss. Rows with fewer kept columns are padded with
    eliminated identity positions, so all rows of the batch share one size.
    """
    R, d = W_rows.shape

    def alloc(k):
        if buffer is not None and buffer.size >= R * k * k:
            return buffer[: R * k * k].reshape(R, k, k)
        return xp.empty((R, k, k), dtype=dtype)

    if mask_rows is None:
        Hb = alloc(d)
        Hb[...] = xp.asarray(Hinv, dtype=dtype)[None]
        idx = xp.broadcast_to(xp.arange(d), (R, d)).copy()
        return Hb, xp.asarray(W_rows, dtype=dtype).copy(), xp.ones((R, d), dtype=bool), idx, np.zeros(R)
    mask_rows = np.asarray(mask_rows, dtype=bool)
    k = int(mask_rows.sum(axis=1).max())
    keep = keep_positions(np, mask_rows, k)
    alive = np.take_along_axis(mask_rows, keep, axis=1)
    H = np.asarray(H, dtype=np.float64)
    Hb = alloc(k)
    wK = np.zeros((R, k))
    loss0 = np.zeros(R)
    for r in range(R):
        pos = np.nonzero(alive[r])[0]
        K, P = keep[r, pos], np.nonzero(~mask_rows[r])[0]
        w = np.asarray(W_rows[r], dtype=np.float64)
        block = np.eye(k)
        if len(K):
            HKK_inv = inverse(H[np.ix_(K, K)])
            block[np.ix_(pos, pos)] = HKK_inv
            wK[r, pos] = w[K] + HKK_inv @ (H[np.ix_(K, P)] @ w[P])
        Hb[r] = xp.asarray(block, dtype=dtype)
        D = w.copy()
        D[K] -= wK[r, pos]
        loss0[r] = D @ H @ D / 2
    return Hb, xp.asarray(wK, dtype=dtype), xp.asarray(alive), xp.asarray(keep), loss0
