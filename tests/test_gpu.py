"""CuPy and NumPy take the same decisions (run on a GPU machine with: pytest -m gpu)."""

import numpy as np
import pytest
from oracles import make_problem

from onnxobc.solver import fit_uniform_grid, prune_blocks, prune_nm, prune_unstructured, quantize

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _needs_cuda():
    from onnxobc.solver.backend import usable_cupy

    if usable_cupy() is None:
        pytest.skip("CuPy with a CUDA device is not available")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_matches_numpy(dtype):
    W, H = make_problem(64, 256, seed=31)
    grid = fit_uniform_grid(W, 4, True)
    for fn in (lambda **k: quantize(W, H, grid, gptq_rows=False, **k), lambda **k: prune_nm(W, H, 2, 4, **k),
               lambda **k: prune_blocks(W, H, [0.5], **k)[0], lambda **k: prune_unstructured(W, H, [0.5], **k)[0]):
        cpu, gpu = fn(device="cpu", dtype=dtype), fn(device="cuda", dtype=dtype)
        if dtype == np.float64:
            np.testing.assert_array_equal(cpu.order, gpu.order)
        assert gpu.loss == pytest.approx(cpu.loss, rel=1e-6 if dtype == np.float64 else 1e-3)


def test_large_batch_from_free_memory_matches_cpu():
    """A layer big enough that the device batch (sized from free memory) holds every row, while
    the CPU splits it: same decisions in float64."""
    W, H = make_problem(512, 384, seed=32)
    grid = fit_uniform_grid(W, 4, True)
    cpu = quantize(W, H, grid, device="cpu", dtype=np.float64, gptq_rows=False)
    gpu = quantize(W, H, grid, device="cuda", dtype=np.float64, gptq_rows=False)
    np.testing.assert_array_equal(cpu.order, gpu.order)
    np.testing.assert_allclose(gpu.weight, cpu.weight, rtol=1e-9, atol=1e-12)


def test_device_forms_match_numpy():
    import cupy

    from onnxobc.solver.backend import sub_gram_
    from onnxobc.solver.elimination import compact_inverse, keep_positions

    rng = np.random.default_rng(33)
    C = rng.standard_normal((9, 40, 40))
    U = rng.standard_normal((9, 7, 40))
    ref, dev = C.copy(), cupy.asarray(C)
    sub_gram_(ref, U)
    sub_gram_(dev, cupy.asarray(U))
    np.testing.assert_allclose(dev.get(), ref, rtol=1e-12, atol=1e-12)
    keep = keep_positions(np, rng.random((9, 40)) < 0.5, 30)
    np.testing.assert_array_equal(compact_inverse(cupy, dev, cupy.asarray(keep)).get(), compact_inverse(np, ref, keep))


def test_hessians_summed_on_the_gpu():
    from onnxobc.solver import HessianAccumulator

    rng = np.random.default_rng(34)
    cpu, gpu = HessianAccumulator(300, "cpu"), HessianAccumulator(300, "cuda")
    for _ in range(3):
        X = rng.standard_normal((500, 300)).astype(np.float32)
        cpu.add_batch(X)
        gpu.add_batch(X)
    assert isinstance(gpu.hessian, np.ndarray)
    np.testing.assert_allclose(gpu.hessian, cpu.hessian, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gpu.mean, cpu.mean, rtol=1e-12, atol=1e-12)


def test_compress_on_the_gpu(tmp_path):
    """The shipped model compressed with --device cuda and --device cpu: both verified, with
    layer losses within float32's reach of each other."""
    import json
    import pathlib

    from onnxobc.cli import main

    digits = pathlib.Path(__file__).parent.parent / "models" / "digits"
    losses = {}
    for device in ("cpu", "cuda"):
        report = tmp_path / f"{device}.json"
        assert main(["compress", str(digits / "mlp.onnx"), str(tmp_path / f"{device}.onnx"), "--calib",
                     str(digits / "calib.npz"), "--wbits", "4", "--device", device, "--report", str(report)]) == 0
        losses[device] = [row["layer_loss"] for row in json.loads(report.read_text())["layers"]]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.02)
