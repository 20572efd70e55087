"""The array-module switch: NumPy on the CPU, CuPy on a GPU, one code path for both."""

from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "cuda", "auto")


def usable_cupy():
    """The cupy module when CuPy is installed and sees a CUDA device, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver, no device: CuPy is installed but unusable
        return None
    return cupy


def array_module(device: str = "cpu"):
    """The array module for `device`: 'cpu' (NumPy), 'cuda' (CuPy) or 'auto'."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return np
    cp = usable_cupy()
    if cp is None:
        if device == "cuda":
            raise ValueError("device 'cuda' needs CuPy (pip install cupy-cuda12x, or the build for this "
                             "CUDA) and a CUDA device; none is usable here")
        return np
    return cp


def xp_of(a):
    """The array module an array belongs to."""
    return np if isinstance(a, np.ndarray) else __import__("cupy").get_array_module(a)


def to_host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


TEMP_BYTES = 1 << 28  # the largest temporary a batched GEMM or gather on a device makes at once


def free_bytes(xp):
    """A GPU's free memory, counting what CuPy's pool holds unused; None for NumPy."""
    if xp is np:
        return None
    free, _ = xp.cuda.runtime.memGetInfo()
    return free + xp.get_default_memory_pool().free_bytes()


_WORKSPACE: dict = {}


def workspace(xp, size: int, dtype):
    """A flat scratch array of at least `size` elements, reused across calls: fresh pages are
    expensive to touch (seen at ~0.3 GB/s on the sandboxed CI machines), so the per-row inverse
    Hessians of every layer live in the same memory. Holds the largest size asked for. On a GPU,
    CuPy's memory pool already reuses memory, and holding the largest inverse would keep it from
    the rest of the run: a fresh array."""
    if xp is not np:
        return xp.empty(size, dtype=dtype)
    key = np.dtype(dtype).str
    buf = _WORKSPACE.get(key)
    if buf is None or buf.size < size:
        _WORKSPACE.pop(key, None)
        buf = _WORKSPACE[key] = xp.empty(size, dtype=dtype)
    return buf[:size]


def sub_gram_(C, U) -> None:
    """C[r] -= U[r]ᵀ U[r] in place for every r; C is (R, d, d) symmetric, U is (R, k, d).

    On NumPy this calls BLAS gemm with beta=1 on each matrix so that no (R, d, d) temporary
    is made (the update is memory-bound otherwise); elsewhere it is batched matmuls over chunks
    of rows whose temporary stays within `TEMP_BYTES`.
    """
    if isinstance(C, np.ndarray) and C.dtype in (np.float32, np.float64) and C.flags.c_contiguous:
        from scipy.linalg import blas

        gemm = blas.sgemm if C.dtype == np.float32 else blas.dgemm
        for r in range(C.shape[0]):
            # C[r] is symmetric, so its transpose (Fortran-ordered, no copy) is updated in place.
            gemm(-1.0, U[r].T, U[r].T, beta=1.0, c=C[r].T, trans_b=1, overwrite_c=1)
    else:
        sub_gram_batched_(C, U)


def sub_gram_batched_(C, U, temp_bytes: int = TEMP_BYTES) -> None:
    """sub_gram_ as batched matmuls, a chunk of rows at a time (the device form)."""
    xp = xp_of(C)
    step = row_chunk(C, temp_bytes)
    for a in range(0, C.shape[0], step):
        C[a: a + step] -= xp.matmul(U[a: a + step].transpose(0, 2, 1), U[a: a + step])


def row_chunk(C, temp_bytes: int) -> int:
    """How many of C's (R, d, d) matrices make a temporary of at most `temp_bytes`."""
    return max(1, temp_bytes // (C.shape[1] * C.shape[2] * C.itemsize))


def sub_gram_upper_(C, U) -> None:
    """As sub_gram_, but only the upper triangle of each C[r] (entries [i, j], j ≥ i) is updated,
    with BLAS syrk at half the flops; the lower triangle is left stale. NumPy only."""
    from scipy.linalg import blas

    syrk = blas.ssyrk if C.dtype == np.float32 else blas.dsyrk
    for r in range(C.shape[0]):
        # the lower triangle of the Fortran-ordered transpose is C[r]'s upper triangle
        syrk(-1.0, U[r].T, beta=1.0, c=C[r].T, lower=1, overwrite_c=1)
