"""The shipped example model (models/digits): compressing it keeps its accuracy on real held-out
digits, and the exact solvers keep more of it than the baselines."""

import pathlib

import numpy as np
import onnx
import pytest
from onnx_models import effective_weights, run

from onnxobc.pipeline import Options, compress

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"


def accuracy(path):
    test = np.load(DIGITS / "test.npz")
    (logits,) = run(onnx.load(path), {"x": test["x"]})
    return float(np.mean(logits.argmax(axis=1) == test["label"]))


def test_dense_model_is_accurate():
    assert accuracy(DIGITS / "mlp.onnx") > 0.97


@pytest.mark.parametrize("opts,baseline,floor", [
    (dict(nm=(2, 4)), dict(nm=(2, 4), method="magnitude"), 0.95),
    (dict(sparsity=0.75), dict(sparsity=0.75, method="magnitude"), 0.90),
    (dict(wbits=2), dict(wbits=2, method="rtn"), 0.80),
])
def test_compressed_accuracy(tmp_path, opts, baseline, floor):
    compress(DIGITS / "mlp.onnx", tmp_path / "a.onnx", DIGITS / "calib.npz", Options(**opts))
    compress(DIGITS / "mlp.onnx", tmp_path / "b.onnx", DIGITS / "calib.npz", Options(**baseline))
    exact, base = accuracy(tmp_path / "a.onnx"), accuracy(tmp_path / "b.onnx")
    assert exact >= floor
    assert exact >= base


@pytest.mark.parametrize("bits,symmetric,smaller", [(8, True, 3.5), (8, False, 3.5), (4, True, 6.0), (3, False, 6.0)])
def test_integer_storage_shrinks_the_file(tmp_path, bits, symmetric, smaller):
    rep = compress(DIGITS / "mlp.onnx", tmp_path / "q.onnx", DIGITS / "calib.npz",
                   Options(wbits=bits, symmetric=symmetric))
    assert rep["bytes"]["input"] / rep["bytes"]["output"] >= smaller
    model = onnx.load(tmp_path / "q.onnx")
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == (21 if bits <= 4 else 17)
    names = ["fc0.weight", "fc1.weight", "fc2.weight"]
    x = np.load(DIGITS / "test.npz")["x"][:2]
    for name, w in effective_weights(model, names, {"x": x}).items():
        assert all(len(np.unique(row)) <= 2**bits for row in w), name  # per output channel (Gemm transB)
    assert accuracy(tmp_path / "q.onnx") > 0.95
