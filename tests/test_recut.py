"""Channel cuts made wave after wave (recut.py) against references: the least-squares fit of the
dense outputs by a cut layer's inputs (numpy's lstsq on the calibration samples), and the cut
solved on the dense model's inputs where those are what the layer receives."""

import pathlib
import re

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_models import make_model, run
from test_channels import PATTERNS, arr, prepared, vi

from onnxobc.calib.capture import exposing
from onnxobc.channels import plan_cuts
from onnxobc.options import Options
from onnxobc.prepare import prepare
from onnxobc.protos import copy
from onnxobc.recut import Checkpoints, cut_sequentially, made
from onnxobc.verify import least_error

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


def deep_mlp(tmp_path, layers=5):
    """x (8) → four hidden ReLU layers of 24 → 4: four groups of neurons, cut one after another."""
    nodes, inits, prev, width = [], [], "x", 8
    for i in range(layers):
        out = 24 if i < layers - 1 else 4
        inits += [arr(f"w{i}", width, out, seed=i, scale=1 / np.sqrt(width)), arr(f"b{i}", out, seed=10 + i)]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"fc{i}.bias")]
        prev, width = f"a{i}", out
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    model = make_model(nodes, [vi("x", ["n", 8])], [vi(prev, ["n", 4])], inits)
    onnx.save(model, tmp_path / "deep.onnx")
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    options = Options(channels=0.5)
    prep = prepare(tmp_path / "deep.onnx", str(tmp_path / "c.npz"), options)
    return prep, plan_cuts(prep, 0.5, options.damp)[0], options


def test_checkpoints_give_the_cut_made_again_up_only_where_it_is_behind_at_each(tmp_path):
    """Four groups: one checkpoint, at the second. The model with those two groups cut
    independently is level with itself (go on, and no comparing after); a model far off (its
    weights zero) is behind (stop); the errors compared are least_error's on the held-out samples."""
    prep, cuts, options = deep_mlp(tmp_path)
    assert len(cuts) == 4
    watch = Checkpoints(prep, cuts, options)
    assert watch.marks == [2]
    first_two = cuts[:2]
    same = lambda: made(prep, first_two, Options(sequential="off"))[0]  # noqa: E731
    assert watch(same, first_two[:1])  # before the checkpoint: nothing compared
    assert watch.compared == []
    assert watch(same, first_two) and len(watch.compared) == 1
    _, e = watch.compared[0]
    assert e["sequential"] == e["independent"] > 0
    assert watch(lambda: pytest.fail("compared again"), cuts[:3])

    far = copy(same())
    for init in far.graph.initializer:
        if init.name.startswith("w"):
            init.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(onnx.numpy_helper.to_array(init)), init.name))
    behind = Checkpoints(prep, cuts, options)
    assert not behind(lambda: far, first_two)
    _, errors = least_error(prep.src, {"independent": same(), "sequential": far}, prep.held, options.batch_size)
    assert behind.compared == [(2, errors)] and errors["sequential"] > errors["independent"]
    assert "at 2 of 4 groups" in behind.note()


def test_cut_sequentially_stops_where_told_and_is_unchanged_where_not(tmp_path):
    prep, cuts, options = deep_mlp(tmp_path)
    seen = []

    def stop_at_first(current, so_far):
        seen.append(len(so_far))
        onnx.checker.check_model(current())
        return False

    assert cut_sequentially(prep, cuts, options, keep_going=stop_at_first) is None
    assert seen == [1]
    counts = []
    model, _, again = cut_sequentially(prep, cuts, options, keep_going=lambda c, so_far: counts.append(len(so_far)) or True)
    assert counts == [1, 2, 3, 4]
    plain, _, plain_cuts = cut_sequentially(prep, cuts, options)
    x = {"x": prep.calib["x"][:8]}
    np.testing.assert_array_equal(run(model, x)[0], run(plain, x)[0])
    assert [c.keep.tolist() for c in again] == [c.keep.tolist() for c in plain_cuts]


def test_auto_keeps_the_independent_cut_where_the_checkpoints_give_the_other_up(tmp_path, monkeypatch):
    prep, cuts, options = deep_mlp(tmp_path)
    monkeypatch.setattr(Checkpoints, "__call__", lambda self, current, so_far: False)
    model, _, kept, note = made(prep, cuts, options)
    independent = made(prep, cuts, Options(sequential="off"))[0]
    x = {"x": prep.calib["x"][:8]}
    np.testing.assert_array_equal(run(model, x)[0], run(independent, x)[0])
    assert kept is cuts and note.startswith("channels cut independently (sequential auto)") and "given up" in note
