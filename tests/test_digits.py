"""The shipped example model (models/digits): compressing it keeps its accuracy on real held-out
digits, and the exact solvers keep more of it than the baselines."""

import pathlib

import numpy as np
import onnx
import pytest
from onnx_models import run

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
    quiet = dict(progress=lambda m: None)
    compress(DIGITS / "mlp.onnx", tmp_path / "a.onnx", DIGITS / "calib.npz", Options(**opts), **quiet)
    compress(DIGITS / "mlp.onnx", tmp_path / "b.onnx", DIGITS / "calib.npz", Options(**baseline), **quiet)
    exact, base = accuracy(tmp_path / "a.onnx"), accuracy(tmp_path / "b.onnx")
    assert exact >= floor
    assert exact >= base
