"""Bias correction: on a single layer (so its inputs are the dense ones) the compressed output's
mean over the calibration samples equals the dense output's, whatever form the bias takes.
onnxruntime runs unoptimised here: with optimisations it fuses INT4 DequantizeLinear + MatMul into
its MatMulNBits kernel, whose arithmetic differs slightly from the stored weights'."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
from onnx_models import make_model

from onnxobc.pipeline import Options, compress

F = TensorProto.FLOAT


def single(kind, rng):
    arr = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), name)  # noqa: E731
    if kind.startswith("conv"):
        ins, inits = ["x", "W"], [arr("W", 8, 4, 3, 3)]
        if kind == "conv_bias":
            ins.append("b")
            inits.append(arr("b", 8))
        node = helper.make_node("Conv", ins, ["y"], name="n", kernel_shape=[3, 3], group=2 if kind == "conv" else 1,
                                pads=[1, 1, 1, 1])
        if kind == "conv":
            inits = [arr("W", 8, 2, 3, 3)]
        x = helper.make_tensor_value_info("x", F, ["n", 4, 5, 5])
        y = helper.make_tensor_value_info("y", F, ["n", 8, 5, 5])
        return make_model([node], [x], [y], inits), (64, 4, 5, 5)
    x = helper.make_tensor_value_info("x", F, ["n", 16])
    y = helper.make_tensor_value_info("y", F, ["n", 6])
    if kind == "matmul":
        return make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="n")], [x], [y], [arr("W", 16, 6)]), (64, 16)
    if kind == "gemm_c":
        node = helper.make_node("Gemm", ["x", "W", "c"], ["y"], name="n", transB=1, alpha=0.5, beta=2.0)
        return make_model([node], [x], [y], [arr("W", 6, 16), arr("c", 6)]), (64, 16)
    node = helper.make_node("Gemm", ["x", "W"], ["y"], name="n")
    return make_model([node], [x], [y], [arr("W", 16, 6)]), (64, 16)


def exact_run(model, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("kind", ["conv_bias", "conv", "matmul", "gemm_c", "gemm"])
def test_output_mean_is_restored(tmp_path, kind):
    rng = np.random.default_rng(0)
    model, shape = single(kind, rng)
    onnx.save(model, tmp_path / "m.onnx")
    x = (rng.standard_normal(shape) + 0.7).astype(np.float32)  # inputs with a mean, as after a ReLU
    np.savez(tmp_path / "c.npz", x=x)
    means = {}
    for flag in (True, False):
        compress(tmp_path / "m.onnx", tmp_path / f"{flag}.onnx", tmp_path / "c.npz",
                 Options(wbits=2, method="rtn", bias_correction=flag, holdout=0.01))
        means[flag] = exact_run(onnx.load(tmp_path / f"{flag}.onnx"), x[: len(x) - 1])
    dense = exact_run(model, x[: len(x) - 1])
    axes = (0, 2, 3) if kind.startswith("conv") else (0,)
    scale = np.abs(dense).mean()
    fixed = np.abs(means[True].mean(axis=axes) - dense.mean(axis=axes)).max() / scale
    raw = np.abs(means[False].mean(axis=axes) - dense.mean(axis=axes)).max() / scale
    assert fixed < 1e-4 and raw > 1e-2, (fixed, raw)


@pytest.mark.parametrize("opts", [dict(wbits=2, method="rtn"), dict(sparsity=0.8, method="magnitude"),
                                  dict(rank=0.3), dict(codebook="ternary")])
def test_channels_read_by_batch_norm_keep_their_variance(tmp_path, opts):
    rng = np.random.default_rng(1)
    arr = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn")]
    inits = [arr("W", 8, 4, 3, 3), arr("g", 8), arr("b", 8), arr("m", 8),
             numpy_helper.from_array(rng.uniform(1, 2, 8).astype(np.float32), "v")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", F, ["n", 4, 5, 5])],
                       [helper.make_tensor_value_info("y", F, ["n", 8, 5, 5])], inits)
    onnx.save(model, tmp_path / "m.onnx")
    x = (rng.standard_normal((64, 4, 5, 5)) + 0.5).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    y = {}
    for flag in (True, False):
        rep = compress(tmp_path / "m.onnx", tmp_path / f"{flag}.onnx", tmp_path / "c.npz",
                       Options(**opts, variance_correction=flag, holdout=0.01))
        assert ("variance corrected" in rep["layers"][0]["note"]) == flag
        y[flag] = exact_run(onnx.load(tmp_path / f"{flag}.onnx"), x[:63])
    dense = exact_run(model, x[:63])
    std = lambda a: a.std(axis=(0, 2, 3))  # noqa: E731
    fixed = np.abs(std(y[True]) / std(dense) - 1).max()
    raw = np.abs(std(y[False]) / std(dense) - 1).max()
    assert fixed < 1e-3 and raw > 2e-2, (fixed, raw)
    assert np.abs(y[True].mean(axis=(0, 2, 3)) - dense.mean(axis=(0, 2, 3))).max() < 1e-3 * np.abs(dense).mean()
