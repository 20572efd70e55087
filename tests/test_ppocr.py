"""Real models nobody here wrote: PP-OCRv4 det and rec (weights in Constant nodes, opset 12)
compress, verify and shrink. Slow (about two minutes): run with -m slow."""

import numpy as np
import onnx
import pytest
import ppocr

from onnxobc.graph.layers import discover
from onnxobc.graph.model import load_model
from onnxobc.pipeline import Options, compress

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models():
    try:
        return ppocr.fetch()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name,inputs,layers", [("det", ppocr.det_inputs, 62), ("rec", ppocr.rec_inputs, 47)])
def test_ppocr_int8_compresses_verifies_and_shrinks(models, tmp_path, name, inputs, layers):
    model = load_model(models[name])
    found, skipped = discover(model)
    assert len(found) == layers
    np.savez(tmp_path / "calib.npz", x=inputs(12))
    rep = compress(models[name], tmp_path / "out.onnx", tmp_path / "calib.npz", Options(wbits=8))
    onnx.checker.check_model(onnx.load(tmp_path / "out.onnx"))
    (err,) = rep["verification"]["relative_output_error"].values()
    assert err < 0.1, err
    assert rep["bytes"]["input"] / rep["bytes"]["output"] > 3.0


@pytest.mark.parametrize("name,inputs", [("det", ppocr.det_inputs), ("rec", ppocr.rec_inputs)])
def test_ppocr_channels_removed_through_real_groups(models, tmp_path, name, inputs):
    """--channels on the real CNNs: groups through BatchNorm-folded affine steps, hard-swish and
    depthwise Convs are cut, the output verifies, and the file shrinks."""
    np.savez(tmp_path / "calib.npz", x=inputs(12))
    rep = compress(models[name], tmp_path / "out.onnx", tmp_path / "calib.npz", Options(channels=0.3))
    onnx.checker.check_model(onnx.load(tmp_path / "out.onnx"))
    assert rep["bytes"]["output"] < 0.9 * rep["bytes"]["input"]
    assert sum("output channels kept" in r["note"] for r in rep["layers"]) >= 10
