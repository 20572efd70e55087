"""Channel cuts made wave after wave (recut.py) against references: the least-squares fit of the
dense outputs by a cut layer's inputs (numpy's lstsq on the calibration samples), and the cut
solved on the dense model's inputs where those are what the layer receives."""

import pathlib
import re

import numpy as np
import onnx
import pytest
from onnx_models import run
from test_channels import PATTERNS, prepared

from onnxobc.calib.capture import exposing
from onnxobc.channels import plan_cuts
from onnxobc.options import Options
from onnxobc.prepare import prepare
from onnxobc.recut import cut_sequentially, made

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"


def test_the_last_layer_is_the_least_squares_fit_of_the_dense_outputs():
    """Digits MLP, half of both hidden layers cut: fc2 reads neurons of an fc1 that was itself cut
    (fewer inputs), so its inputs differ from the dense model's. Its outputs on the calibration
    samples, from its kept inputs and its bias, are the least-squares fit of the dense logits by
    those inputs and a constant; solved on the dense inputs instead (its inputs are the same: fc1 reads
the dense inputs either way) they are further off."""
    options = Options(channels=0.5, damp=1e-9)
    prep = prepare(DIGITS / "mlp.onnx", str(DIGITS / "calib.npz"), options)
    cuts, _ = plan_cuts(prep, 0.5, options.damp)
    assert sorted(c.group.producer for c in cuts) == ["fc0.weight", "fc1.weight"]
    model, rows_kept, made_cuts = cut_sequentially(prep, cuts, options)
    onnx.checker.check_model(model)
    feed = {"x": prep.calib["x"]}
    dense = run(prep.model, feed)[0].astype(np.float64)
    logits, inputs = (a.astype(np.float64) for a in run(exposing(model, ["relu1"]), feed)[:2])
    fit, *_ = np.linalg.lstsq(np.hstack([inputs, np.ones((len(inputs), 1))]), dense, rcond=None)
    best = np.hstack([inputs, np.ones((len(inputs), 1))]) @ fit
    np.testing.assert_allclose(logits, best, rtol=1e-3, atol=1e-3 * np.abs(dense).max())
    independent = run(made(prep, cuts, Options(sequential="off"))[0], feed)[0]
    assert ((logits - dense) ** 2).sum() < ((independent - dense) ** 2).sum()  # the same inputs, another fit
    assert {c.group.producer: len(c.keep) for c in made_cuts} == {c.group.producer: len(c.keep) for c in cuts}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_where_the_inputs_are_the_dense_ones_the_cut_is_the_independent_one(tmp_path, pattern):
    """Every coupling pattern: the model cut wave after wave passes onnx.checker and runs; the
    group cut first gets inputs no cut changed, so its consumers are what the cut on the dense
    model's inputs gives them (its earlier layers refitted to inputs equal to the dense ones stay)."""
    prep, x = prepared(tmp_path, PATTERNS[pattern])
    options = Options(channels=0.5)
    cuts, _ = plan_cuts(prep, 0.5, options.damp)
    model, _, again = cut_sequentially(prep, cuts, options)
    onnx.checker.check_model(model)
    out = run(model, {"x": x[:8]})[0]
    assert out.shape == run(prep.model, {"x": x[:8]})[0].shape and np.isfinite(out).all()
    first = {c.group.producer: c for c in cuts}[again[0].group.producer]
    assert again[0].keep.tolist() == first.keep.tolist()
    for name, weight in first.weights.items():
        np.testing.assert_allclose(again[0].weights[name], weight, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(again[0].shifts[name], first.shifts[name], rtol=1e-4, atol=1e-5)


def test_auto_keeps_the_model_of_lower_held_out_error():
    options = Options(channels=0.5)
    prep = prepare(DIGITS / "mlp.onnx", str(DIGITS / "calib.npz"), options)
    cuts, _ = plan_cuts(prep, 0.5, options.damp)
    model, _, _, note = made(prep, cuts, options)
    assert note.startswith("channels cut ") and "held-out output error" in note
    errors = {m: float(e) for e, m in re.findall(r"([0-9.e+-]+) (independent|sequential)", note)}
    chosen = note.split(" ")[2][:-2]  # "independently" / "sequentially"
    assert len(errors) == 2 and errors[chosen] == min(errors.values())
    assert made(prep, cuts, Options(sequential="on"))[3] is None
