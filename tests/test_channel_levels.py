"""Channel removal as levels of a speedup budget (channel_levels.py, reach.cut_costs, dp.combine):
a unit's options are exactly the Pareto front of its members' choices, a cut's loss is the loss of
the model actually cut, the cost model predicts the whole models it was timed on, and a plan that
cuts writes the model the cut makes (then solved at the members' levels)."""

import itertools
import pathlib

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_channels import PATTERNS, prepared

from onnxobc.budget import compress_to_budget, make_plan, stitch
from onnxobc.channel_levels import units
from onnxobc.channels import apply_cuts
from onnxobc.db.build import build
from onnxobc.db.levels import Level, level_set, parse
from onnxobc.db.store import Database
from onnxobc.dp import combine, solve
from onnxobc.errors import OptionError
from onnxobc.fidelity import MAX_SAMPLES
from onnxobc.options import Options
from onnxobc.prepare import capture, load
from onnxobc.reach import cut_costs, reachable
from onnxobc.solver import HessianAccumulator
from onnxobc.verify import outputs

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4))
def test_combined_options_are_the_pareto_front_of_every_choice(seed, members, levels):
    rng = np.random.default_rng(seed)
    lists = [[(float(c), float(e)) for c, e in zip(rng.integers(0, 6, levels), rng.integers(0, 6, levels))]
             for _ in range(members)]
    every = [(sum(lists[m][k][0] for m, k in enumerate(ks)), sum(lists[m][k][1] for m, k in enumerate(ks)))
             for ks in itertools.product(range(levels), repeat=members)]
    front = sorted({(c, e) for c, e in every if not any(c2 <= c and e2 < e or c2 < c and e2 <= e for c2, e2 in every)})
    got = combine(lists)
    assert [(c, e) for c, e, _ in got] == front
    for c, e, picks in got:  # each option's picks add up to it
        assert (sum(lists[m][k][0] for m, k in enumerate(picks)), sum(lists[m][k][1] for m, k in enumerate(picks))) \
            == (c, e)
    # a unit of the DP with the front as its options chooses what the DP over its members would
    budget = float(rng.integers(0, 6 * members + 1))
    if budget >= sum(min(c for c, _ in l) for l in lists) and budget > 0:
        (k,) = solve([[e for _, e, _ in got]], [[c for c, _, _ in got]], budget, buckets=int(budget) or 1)
        best = min(e for c, e in every if c <= budget)
        assert got[k][1] == best


def test_a_restricted_hessian_is_the_one_its_columns_capture():
    x = np.random.default_rng(0).standard_normal((50, 7))
    full, part = HessianAccumulator(7), HessianAccumulator(3)
    full.add_batch(x)
    part.add_batch(x[:, [1, 4, 6]])
    small = full.restricted([1, 4, 6])
    np.testing.assert_allclose(small.hessian, part.hessian)
    np.testing.assert_allclose(small.mean, part.mean)


@pytest.mark.parametrize("pattern", ["mlp-gelu", "attention", "conv-bn-relu-conv"])
def test_a_cuts_loss_is_the_loss_of_the_model_cut(tmp_path, pattern):
    prep, _ = prepared(tmp_path, PATTERNS[pattern])
    opt = Options(batch_size=8)
    with Database(tmp_path / "db") as db:
        channels = reachable(prep, db, prep.src, [Level()], opt, shares=(0.25, 0.5))["channels"]
    assert channels.units
    channels.measure_losses(prep, opt)
    data = {k: v[:MAX_SAMPLES] for k, v in prep.calib.items()}
    dense = outputs(prep.model, data, 8)
    for i, unit in enumerate(channels.units):
        for share, count in unit.counts.items():
            model, _ = apply_cuts(prep.model, prep.layers, [channels.removals[i].cut(count)])
            onnx.checker.check_model(model)
            got = outputs(model, data, 8)
            loss = sum(np.sum((got[k].astype(np.float64) - d) ** 2) / np.sum(d.astype(np.float64) ** 2)
                       for k, d in dense.items())
            assert channels.losses[i][share] == pytest.approx(loss, rel=1e-3, abs=1e-9)


def test_units_share_no_layer(tmp_path):
    prep, _ = prepared(tmp_path, PATTERNS["mlp-gelu"])  # fc1 → fc2 → fc3: fc2 is in both groups
    found = units(prep, (0.5,))
    members = [w for u in found for w in u.group.members]
    assert len(members) == len(set(members)) and found[0].group.producer == "w1" and len(found) == 1


def test_the_cost_model_predicts_each_timed_whole_model():
    d, a = Level(), parse("w8a8dyn")
    c, ca = parse("c0.500"), parse("c0.500+w8a8dyn")
    full = {"p": {d: 4.0, a: 2.0}, "q": {d: 2.0, a: 1.5}, "r": {d: 3.0, a: 1.0}}  # p, q: a unit; r: not cut
    narrow = {0.5: {"p": {d: 2.5, a: 1.0}, "q": {d: 1.0, a: 0.9}}}
    uniform = {"dense": 9.0, "w8a8dyn": 5.0, c.name: 6.0, ca.name: 3.0}
    costs, factors = cut_costs(full, narrow, uniform, scale=1.0)
    assert factors[0.5]["dense"] == pytest.approx(3.0 / 2.5)  # the cut saves 3 in the model, 2.5 alone
    cut = costs[0.5]
    assert uniform["dense"] - sum(full[w][d] - cut[w][d] for w in cut) == pytest.approx(uniform[c.name])
    # every layer at a, the unit's cut: its layers' narrowed costs and r's (its saving scaled alike) add up
    f = factors[0.5]["w8a8dyn"]
    r = full["r"][d] - f * (full["r"][d] - full["r"][a])
    assert cut["p"][a] + cut["q"][a] + r == pytest.approx(uniform[ca.name])


def test_a_plan_that_cuts_writes_the_cut_model(tmp_path):
    opt = Options()
    levels = [lv for lv in level_set("latency") if lv.name in ("dense", "w8a8")]
    prep = load(MODEL, CALIB, opt)
    out = tmp_path / "o.onnx"
    with Database(tmp_path / "db") as db:
        reach = reachable(prep, db, MODEL, levels, opt, shares=(0.5,))
        channels = reach["channels"]
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt)
        channels.measure_losses(full, opt)
        planned = make_plan(full, db, MODEL, opt, "speedup", "1.01x", levels, best_effort=True, channels=channels)
        (unit,) = channels.units
        plain = {l.weight for l in full.layers} - set(unit.group.members)
        planned["plan"].update({**{w: "c0.500" for w in unit.group.members}, **{w: "dense" for w in plain}})
        report = stitch(full, db, MODEL, out, opt, planned, 0.0, channels=channels)
        cut_model, _ = apply_cuts(full.model, full.layers, [channels.removals[0].cut(unit.counts[0.5])])
        data = {k: v[:64] for k, v in full.calib.items()}
        a, b = outputs(out, data, 32), outputs(cut_model, data, 32)  # nothing else compressed: the cut model
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
        planned["plan"][unit.group.consumers[0].weight] = "c0.500+w8a8"  # the consumer also int8, narrowed
        report = stitch(full, db, MODEL, out, opt, planned, 0.0, channels=channels)
        written = onnx.load(out)
    shapes = {t.name: list(t.dims) for t in written.graph.initializer}
    assert shapes[unit.group.producer][0] == 64
    assert any(n.op_type == "QuantizeLinear" for n in written.graph.node)
    rows = {r["weight"]: r for r in report["layers"]}
    for w in unit.group.members:
        assert "64 of 128 channels" in rows[w]["note"] and rows[w]["output_error"] > 0
    assert report["verification"]["relative_output_error"]["logits"] < 0.5


def test_channel_levels_are_for_speedup_budgets_alone(tmp_path):
    with pytest.raises(OptionError, match="names the share alone"):
        compress_to_budget(MODEL, tmp_path / "o.onnx", CALIB, Options(), "speedup", "2x",
                           levels=[Level(), parse("c0.250+w8a8")])
    with pytest.raises(OptionError, match="speedup"):
        compress_to_budget(MODEL, tmp_path / "o.onnx", CALIB, Options(), "size", "0.5",
                           levels=[Level(), parse("c0.250")])
    assert not (tmp_path / "o.onnx").exists()
