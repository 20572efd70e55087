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
from onnxobc.channel_levels import convex_envelope
from onnxobc.channel_units import nesting, offered, units
from onnxobc.channels import apply_cuts
from onnxobc.costs import frame
from onnxobc.db.build import build
from onnxobc.db.levels import Level, parse
from onnxobc.db.store import Database
from onnxobc.dp import combine, solve
from onnxobc.errors import OptionError
from onnxobc.fidelity import MAX_SAMPLES
from onnxobc.options import Options
from onnxobc.prepare import capture, load
from onnxobc.reach import ALONE, cut_costs, reachable
from onnxobc.recut import made
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


@pytest.mark.parametrize("pattern", ["mlp-gelu", "attention", "conv-bn-relu-conv", "se-block"])
def test_a_cuts_loss_is_the_loss_of_the_model_cut(tmp_path, pattern):
    prep, _ = prepared(tmp_path, PATTERNS[pattern])
    opt = Options(batch_size=8)
    with Database(tmp_path / "db") as db:
        channels = reachable(prep, db, prep.src, [Level()], opt, shares=(0.25, 0.5))["channels"]
    assert channels.units
    channels.measure_losses(prep, opt)
    data = {k: v[:MAX_SAMPLES] for k, v in prep.held.items()}
    dense = outputs(prep.model, data, 8)

    for i, unit in enumerate(channels.units):  # a chain's with all its groups cut
        measured = {}
        for share, counts in unit.counts.items():
            cuts = [channels.removals[g.producer].cut(k) for g, k in zip(unit.groups, counts) if k]
            model, _ = apply_cuts(prep.model, prep.layers, cuts)
            onnx.checker.check_model(model)
            got = outputs(model, data, 8)
            loss = sum(np.sum((got[k].astype(np.float64) - d) ** 2) / np.sum(d.astype(np.float64) ** 2)
                       for k, d in dense.items())
            measured[share] = loss
        removed = {share: sum(counts) for share, counts in unit.counts.items()}
        for share, loss in convex_envelope(measured, removed).items():
            assert channels.losses[i][share] == pytest.approx(loss, rel=1e-3, abs=1e-9)


def test_a_deeper_cut_loses_at_least_in_proportion_to_the_channels_it_removes():
    removed = {0.125: 2, 0.25: 4, 0.375: 6, 0.5: 8}
    got = convex_envelope({0.5: 0.2, 0.125: 0.01, 0.375: 0.05, 0.25: 0.07}, removed)
    assert got == pytest.approx({0.125: 0.01, 0.25: 0.07, 0.375: 0.105, 0.5: 0.2})
    assert convex_envelope({0.25: 0.0, 0.5: 0.0}, {0.25: 8, 0.5: 16}) == {0.25: 0.0, 0.5: 0.0}
    measured = {0.125: 0.01, 0.25: 0.03, 0.5: 0.09}  # already convex: unchanged
    assert convex_envelope(measured, {0.125: 1, 0.25: 2, 0.5: 4}) == measured


def test_groups_that_share_a_layer_are_a_chain_beside_the_groups_alone(tmp_path):
    prep, _ = prepared(tmp_path, PATTERNS["mlp-gelu"])  # fc1 → fc2 → fc3: fc2 is in both groups
    found = units(prep, (0.5,))
    assert [[g.producer for g in u.groups] for u in found] == [["w1"], ["w1", "w2"]]
    assert nesting(found) == {1: [0]} and offered(found) == [1]  # the DP chooses for the chain, w1 alone inside it
    assert found[1].members == ["w1", "w2", "w3"] and found[1].counts[0.5] == (16, 8)


def test_the_cost_model_predicts_each_timed_whole_model():
    d, a = Level(), parse("w8a8dyn")
    c, ca = parse("c0.500"), parse("c0.500+w8a8dyn")
    full = {"p": {d: 4.0, a: 2.0}, "q": {d: 2.0, a: 1.5}, "r": {d: 3.0, a: 1.0}}  # p, q: a unit; r: not cut
    narrow = {0: {0.5: {"p": {d: 2.5, a: 1.0}, "q": {d: 1.0, a: 0.9}}},
              1: {0.5: {"p": {d: 3.0, a: 1.5}}}}  # unit 1: only p, inside unit 0 (cut in a model of its own)
    uniform = {"dense": 9.0, "w8a8dyn": 5.0, c.name: 6.0, ca.name: 3.0, ALONE + c.name: 7.5}
    costs, factors = cut_costs(full, narrow, uniform, scale=1.0, whole=[0])
    assert factors[0.5]["whole"]["dense"] == pytest.approx(3.0 / 2.5)  # the cut saves 3 in the model, 2.5 alone
    cut = costs[0][0.5]
    # the inner unit's model saves 1.5 where its layer alone saves 1: scaled by its own factor
    assert factors[0.5]["alone"]["dense"] == pytest.approx(1.5) and costs[1][0.5]["p"][d] == pytest.approx(2.5)
    assert uniform["dense"] - sum(full[w][d] - cut[w][d] for w in cut) == pytest.approx(uniform[c.name])
    # every layer at a, the unit's cut: its layers' narrowed costs and r's (its saving scaled alike) add up
    f = factors[0.5]["whole"]["w8a8dyn"]
    r = full["r"][d] - f * (full["r"][d] - full["r"][a])
    assert cut["p"][a] + cut["q"][a] + r == pytest.approx(uniform[ca.name])


def test_a_cut_saving_more_outside_its_layers_than_they_take_meets_a_target_beyond_the_layers():
    d, c = Level(), parse("c0.500")
    full = {"p": {d: 2.0}, "q": {d: 1.0}, "r": {d: 3.0}}  # 6 of the model's 10 in layers: 4 no level changes
    narrow = {0: {0.5: {"p": {d: 1.0}, "q": {d: 0.5}}}}  # alone the cut saves 1.5; in the model, with
    uniform = {"dense": 10.0, c.name: 5.0}  # attention and activations of the removed units, 5
    costs, _ = cut_costs(full, narrow, uniform, scale=1.0, whole=[0])
    cut = costs[0][0.5]
    assert cut["p"][d] < 0 and cut["q"][d] < 0
    fixed, scale = frame(uniform["dense"], sum(t[d] for t in full.values()))
    assert fixed + scale * (cut["p"][d] + cut["q"][d] + full["r"][d]) == pytest.approx(uniform[c.name])
    budget = (uniform["dense"] / 2 - fixed) / scale  # 2x: 1 for the layers, less than r alone takes
    unit = [(0.0, 0.0), (cut["p"][d] + cut["q"][d], 0.1)]  # (cost, loss): uncut, cut
    assert solve([[0.0], [e for _, e in unit]], [[full["r"][d]], [t for t, _ in unit]], budget) == [0, 1]


def test_a_plan_that_cuts_writes_the_cut_model(tmp_path):
    opt = Options(sequential="off")  # the cuts as solved for the plan (recut.made); "on" below
    levels = [Level(), parse("w8a8")]  # named, not the machine's default set (w7a8 where the CPU lacks VNNI)
    prep = load(MODEL, CALIB, opt)
    out = tmp_path / "o.onnx"
    with Database(tmp_path / "db") as db:
        reach = reachable(prep, db, MODEL, levels, opt, shares=(0.5,))
        channels = reach["channels"]
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt)
        channels.measure_losses(full, opt)
        planned = make_plan(full, db, MODEL, opt, "speedup", "1.01x", levels, best_effort=True, channels=channels)
        unit, chain = channels.units  # fc0's group alone (fc0 → fc1), and the chain fc0 → fc1 → fc2
        data = {k: v[:64] for k, v in full.calib.items()}

        def writes(members, cuts, opt=opt):  # a plan cutting `members` by half writes the model `cuts` make
            plain = {l.weight for l in full.layers} - set(members)
            planned["plan"].update({**{w: "c0.500" for w in members}, **{w: "dense" for w in plain}})
            report = stitch(full, db, MODEL, out, opt, planned, 0.0, channels=channels)
            cut_model = made(full, cuts, opt)[0]
            a, b = outputs(out, data, 32), outputs(cut_model, data, 32)  # nothing else compressed: the cut model
            for k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
            return report

        (g,) = unit.groups
        writes(unit.members, [channels.removals[g.producer].cut(unit.counts[0.5][0])])
        chain_cuts = [channels.removals[h.producer].cut(k) for h, k in zip(chain.groups, chain.counts[0.5])]
        writes(chain.members, chain_cuts, Options(sequential="on"))  # the chain cut again wave after wave
        report = writes(chain.members, chain_cuts)
        assert [(i, j) for i, j, _ in channels.decode({w: parse(n) for w, n in planned["plan"].items()})] == \
            [(1, 0), (1, 1)]  # the chain whole: both its groups
        with pytest.raises(ValueError, match="unevenly"):  # fc2 narrowed while fc1 keeps its outputs
            planned["plan"].update({w: "c0.500" if w == chain.members[-1] else "dense" for w in chain.members})
            stitch(full, db, MODEL, out, opt, planned, 0.0, channels=channels)
        planned["plan"].update({w: "c0.500" for w in unit.members})
        planned["plan"][chain.members[-1]] = "dense"
        planned["plan"][g.consumers[0].weight] = "c0.500+w8a8"  # the consumer also int8, narrowed
        report = stitch(full, db, MODEL, out, opt, planned, 0.0, channels=channels)
        written = onnx.load(out)
    shapes = {t.name: list(t.dims) for t in written.graph.initializer}
    assert shapes[g.producer][0] == 64
    assert any(n.op_type == "QuantizeLinear" for n in written.graph.node)
    rows = {r["weight"]: r for r in report["layers"]}
    for w in unit.members:
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


def test_a_chains_options_are_the_front_of_cutting_it_whole_or_its_groups_alone():
    """Chain a → b → c of two groups (a's: a, b; b's: b, c) with a's group alone inside it: every
    option the DP gets is one of the plans brute force finds (the chain whole at a share, a's group
    alone at a share, or nothing cut; each layer at its own level), the options are exactly the
    Pareto front of those, and each decodes to the groups it cuts."""
    import types

    from onnxobc.channel_levels import ChannelLevels
    from onnxobc.channel_units import Unit
    from onnxobc.dp import pareto

    d, q = Level(), parse("w8a8")
    ga = types.SimpleNamespace(members=["a", "b"], producer="a", unit="channels")
    gb = types.SimpleNamespace(members=["b", "c"], producer="b", unit="channels")
    alone, chain = Unit([ga], {0.5: (4,)}), Unit([ga, gb], {0.5: (4, 2)})
    rng = np.random.default_rng(3)

    def timed(ws):
        return {w: {d: float(rng.integers(5, 9)), q: float(rng.integers(1, 5))} for w in ws}

    seconds = {0: {0.5: timed("ab")}, 1: {0.5: timed("abc")}}
    channels = ChannelLevels([alone, chain], seconds, {}, losses={0: {0.5: 3.0}, 1: {0.5: 5.0}})
    levels = {w: [d, q] for w in "abc"}
    losses = {w: [0.0, float(rng.integers(1, 4))] for w in "abc"}
    costs = {w: [10.0, float(rng.integers(5, 10))] for w in "abc"}
    every = []
    for picks in itertools.product(range(2), repeat=3):
        lv = dict(zip("abc", picks))
        e = sum(losses[w][k] for w, k in lv.items())
        every.append((sum(costs[w][k] for w, k in lv.items()), e, {w: levels[w][k] for w, k in lv.items()}))
        cut = {w: (d if k == 0 else parse("c0.500+w8a8")) if w != "c" else levels[w][k] for w, k in lv.items()}
        cut = {w: parse("c0.500") if v.dense and w != "c" else v for w, v in cut.items()}
        every.append((sum(seconds[0][0.5][w][levels[w][k]] for w, k in lv.items() if w != "c") + costs["c"][lv["c"]],
                      e + 3.0, cut))
        whole = {w: parse("c0.500") if k == 0 else parse("c0.500+w8a8") for w, k in lv.items()}
        every.append((sum(seconds[1][0.5][w][levels[w][k]] for w, k in lv.items()), e + 5.0, whole))
    got = channels.options(1, levels, losses, costs)
    assert [o[:2] for o in got] == [o[:2] for o in pareto(every)]
    assert channels.offered() == [1]
    for cost, loss, chosen in got:
        shares = {lv.channels for lv in chosen.values()}
        cut = [(i, j) for i, j, _ in channels.decode(chosen)]
        assert cut == ([] if shares == {None} else [(1, 0), (1, 1)] if shares == {0.5} else [(0, 0)])
