"""Layer Hessians H = 2/N · Σ x xᵀ, their preparation (dead inputs, dampening) and the layer loss."""

from __future__ import annotations

import numpy as np

from .backend import array_module, to_host, xp_of
from .checks import check_hessian, check_weight


class HessianAccumulator:
    """Streams input batches X (samples × cols) into H = 2/N · XᵀX, accumulated in float64.

    The result does not depend on how the samples are split into batches (up to float64
    rounding), so memory is bounded by cols² whatever the calibration set's size. With
    device="cuda" (or "auto" where CuPy has a device) the sums live on the GPU, each batch is
    copied there as it comes and XᵀX is a device GEMM; `hessian` and `mean` are host arrays. A
    pickled accumulator holds host arrays, so it unpickles where there is no GPU (a cluster's
    CPU workers).
    """

    def __init__(self, cols: int, device: str = "cpu"):
        if cols < 1:
            raise ValueError(f"a Hessian needs at least one column, got {cols}")
        xp = array_module(device)
        self.cols = cols
        self._sum = xp.zeros((cols, cols), dtype=np.float64)
        self._first = xp.zeros(cols, dtype=np.float64)
        self.samples = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sum": to_host(self._sum), "_first": to_host(self._first)}

    def add_batch(self, X) -> None:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.cols:
            raise ValueError(f"batch must be (samples, {self.cols}), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("calibration batch contains NaN or Inf")
        X = xp_of(self._sum).asarray(X).astype(np.float64, copy=False)
        self._sum += X.T @ X
        self._first += X.sum(axis=0)
        self.samples += X.shape[0]

    @property
    def mean(self) -> np.ndarray:
        """E[x] over the samples: (W − Ŵ)·E[x] is the shift a compressed layer adds to its output mean."""
        if self.samples == 0:
            raise ValueError("no samples were added to the Hessian")
        return to_host(self._first) / self.samples

    @property
    def diagonal(self) -> np.ndarray:
        """diag H, without forming H (nor copying it from a device)."""
        if self.samples == 0:
            raise ValueError("no samples were added to the Hessian")
        return to_host(self._sum.diagonal()) * (2.0 / self.samples)

    @property
    def hessian(self) -> np.ndarray:
        if self.samples == 0:
            raise ValueError("no samples were added to the Hessian")
        H = to_host(self._sum) * (2.0 / self.samples)
        return (H + H.T) / 2

    def restricted(self, cols) -> HessianAccumulator:
        """The accumulator of the same samples with only the inputs `cols` (indices): what a layer
        that lost its other input columns would have captured."""
        cols = np.asarray(cols)
        out = HessianAccumulator.__new__(HessianAccumulator)
        out.cols, out.samples = len(cols), self.samples
        out._sum, out._first = self._sum[cols][:, cols].copy(), self._first[cols].copy()
        return out


class CrossAccumulator:
    """Streams paired batches (X̃, X) of the same samples (samples × cols: a layer's inputs in a
    compressed model and in the dense one) into C = 2/N · X̃ᵀX, accumulated in float64: with
    H̃ = 2/N · X̃ᵀX̃, the weight that maps X̃ closest to the dense outputs WX is refit(W, H̃, C)."""

    def __init__(self, cols: int, device: str = "cpu"):
        xp = array_module(device)
        self._sum = xp.zeros((cols, cols), dtype=np.float64)
        self.samples = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sum": to_host(self._sum)}

    def add_batch(self, X_tilde, X) -> None:
        if np.shape(X_tilde) != np.shape(X) or np.ndim(X) != 2 or np.shape(X)[1] != self._sum.shape[0]:
            raise ValueError(f"paired batches must both be (samples, {self._sum.shape[0]}), got "
                             f"{np.shape(X_tilde)} and {np.shape(X)}")
        xp = xp_of(self._sum)
        self._sum += xp.asarray(X_tilde).astype(np.float64, copy=False).T @ xp.asarray(X).astype(np.float64, copy=False)
        self.samples += np.shape(X)[0]

    @property
    def cross(self) -> np.ndarray:
        if self.samples == 0:
            raise ValueError("no samples were added to the cross term")
        return to_host(self._sum) * (2.0 / self.samples)


def refit(W, H_tilde, C, damp: float = 0.01) -> np.ndarray:
    """The weight (float64) whose outputs on the compressed model's inputs X̃ are closest to the
    dense outputs WX: argmin ‖W'X̃ − WX‖², W' = W Cᵀ H̃⁻¹ (the OBC paper's sequential mode, A.8),
    written W' = W + W(Cᵀ − H̃)H̃⁻¹ with H̃ dampened as `prepare` dampens it in the correction
    only, so that inputs equal to the dense ones (Cᵀ = H̃) give W back exactly; dead inputs get
    no correction."""
    W = np.asarray(W, np.float64)
    H = np.asarray(H_tilde, np.float64)
    dead = np.diag(H) == 0
    if dead.all():
        raise ValueError("every input of the layer is zero on the calibration data")
    Hd = H.copy()
    Hd[dead, :] = 0
    Hd[:, dead] = 0
    Hd[dead, dead] = 1
    Hd[np.diag_indices_from(Hd)] += damp * np.mean(np.diag(Hd))
    rhs = (np.asarray(C, np.float64) - H) @ W.T
    rhs[dead] = 0
    return W + np.linalg.solve(Hd, rhs).T


def refit_with_bias(W, H_tilde, mean_tilde, C, mean, damp: float = 0.01) -> tuple:
    """`refit` with a free bias: (W', shift) minimising ‖W'X̃ + b' − (WX + b)‖² with
    b' = b + shift, shift = Wμ − W'μ̃. Centring both sides turns it into `refit` on the centred
    H̃ − 2μ̃μ̃ᵀ and cross term C − 2μ̃μᵀ (C = 2X̃Xᵀ/N, H̃ = 2X̃X̃ᵀ/N, μ̃ and μ the input means)."""
    mean_tilde, mean = np.asarray(mean_tilde, np.float64), np.asarray(mean, np.float64)
    fitted = refit(W, centered(H_tilde, mean_tilde), np.asarray(C, np.float64) - 2.0 * np.outer(mean_tilde, mean), damp)
    return fitted, np.asarray(W, np.float64) @ mean - fitted @ mean_tilde


def prepare(W, H, damp: float = 0.01):
    """Make a layer problem solvable: returns (W, H) as float32 / float64 copies where

    - dead inputs (H_ii = 0: the input is always zero) get H_ii = 1 and W[:, i] = 0, which
      changes no output;
    - H += damp · mean(diag H) · I (relative dampening), so that H is positive definite.
    """
    W = check_weight(W).copy()
    H = check_hessian(H, W.shape[1]).astype(np.float64, copy=True)
    if not 0 <= damp < 1:
        raise ValueError(f"damp must be in [0, 1), got {damp}")
    dead = np.diag(H) == 0
    if dead.all():
        raise ValueError("every input of the layer is zero on the calibration data")
    H[dead, :] = 0
    H[:, dead] = 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices_from(H)] += damp * np.mean(np.diag(H))
    return W, H


def centered(H, mean) -> np.ndarray:
    """H of the inputs around their mean, 2·E[(x − μ)(x − μ)ᵀ] = H − 2μμᵀ: the layer loss left once
    each output's bias takes the mean shift (W − Ŵ)·μ, which a solve on it may then move freely."""
    mean = np.asarray(mean, np.float64)
    Hc = np.asarray(H, np.float64) - 2.0 * np.outer(mean, mean)
    return (Hc + Hc.T) / 2


def layer_loss(W, W_hat, H) -> float:
    """‖(W − Ŵ)X‖² = tr(ΔW H ΔWᵀ)/2 for H = 2XXᵀ, computed in float64."""
    return float(row_losses(W, W_hat, H).sum())


def row_losses(W, W_hat, H) -> np.ndarray:
    """Each row's share of layer_loss."""
    D = np.asarray(W, dtype=np.float64) - np.asarray(W_hat, dtype=np.float64)
    return np.einsum("ij,ij->i", D @ np.asarray(H, dtype=np.float64), D) / 2


def variance_ratio(W, W_hat, H, mean) -> np.ndarray:
    """Per row, std(w·x) / std(ŵ·x) over the calibration inputs, from the second moment
    E[xxᵀ] = H/2 and the mean: multiplying row i of Ŵ by it restores the output channel's
    variance (1 where the compressed channel is constant)."""
    cov = np.asarray(H, np.float64) / 2 - np.outer(mean, mean)
    W, W_hat = np.asarray(W, np.float64), np.asarray(W_hat, np.float64)
    dense = np.einsum("ij,jk,ik->i", W, cov, W)
    comp = np.einsum("ij,jk,ik->i", W_hat, cov, W_hat)
    ok = (comp > 1e-12 * np.maximum(dense, 1e-300)) & (dense > 0)
    return np.where(ok, np.sqrt(np.where(ok, dense, 1.0) / np.where(ok, comp, 1.0)), 1.0)


def inverse(H, dtype=np.float64) -> np.ndarray:
    """H⁻¹ through a Cholesky factorisation in float64; a clear error if H is not positive definite."""
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(np.asarray(H, dtype=np.float64), lower=1)
    if info == 0:
        Hinv, info = lapack.dpotri(c, lower=1)
    if info != 0:
        raise ValueError(
            "the Hessian is not positive definite; prepare it with onnxobc.solver.prepare "
            "(dampening) or add calibration samples"
        )
    Hinv = np.tril(Hinv) + np.tril(Hinv, -1).T
    return Hinv.astype(dtype)
