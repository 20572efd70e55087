"""A speedup out of reach is refused from timings alone, before anything is solved: the stand-in
weights a level is timed with are written in exactly the format its solved weights are, the
figure is the one the plan would state, and the budget reuses those timings."""

import pathlib

import pytest
from test_compress import onnxobc

from onnxobc import costs
from onnxobc.db.build import level_options, written_alone
from onnxobc.db.levels import level_set, parse
from onnxobc.db.store import Database
from onnxobc.errors import OptionError
from onnxobc.options import Options
from onnxobc.prepare import capture, load, problem
from onnxobc.reach import reachable, stand_in
from onnxobc.solve import solve_layer

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")


def form(model) -> list:
    """What the runtime sees of a written layer but its values: nodes, attributes, initializers'
    names, types and shapes."""
    g = model.graph
    return ([(n.op_type, list(n.input), list(n.output), [(a.name, a.i, a.ints, a.s) for a in n.attribute])
             for n in g.node], sorted((t.name, t.data_type, list(t.dims)) for t in g.initializer))


@pytest.mark.parametrize("name", [lv.name for lv in level_set("latency")] + ["2:4+w8a8", "s0.500", "lr0.500+w4"])
def test_stand_in_weights_are_written_in_the_solved_format(name):
    opt = Options()
    prep = capture(load(MODEL, CALIB, opt), opt, activation_ranges=True)
    level = parse(name)
    for layer in prep.layers:
        solved = solve_layer(problem(prep, layer), level_options(opt, level)) if not level.dense else None
        quick = stand_in(prep, layer, level, opt)
        shape = [8, layer.cols]
        if solved is not None:
            assert quick.row["applied"] == solved.row["applied"]
            assert form(written_alone(prep, layer, level, quick, opt, shape)) == \
                form(written_alone(prep, layer, level, solved, opt, shape))


def test_an_unreachable_speedup_is_refused_before_any_solve(tmp_path):
    from onnxobc.channel_levels import DEEP_SHARES, DEFAULT_SHARES
    from onnxobc.reach import EARLY, WHOLE_MARGIN

    out = tmp_path / "x.onnx"
    r = onnxobc("compress", MODEL, str(out), "--calib", CALIB, "--speedup", "1000x")
    assert r.returncode == 2 and "cannot be met: the best reachable is" in r.stderr
    assert "timed before solving, each channel unit at its largest cut" in r.stderr
    assert "--best-effort" in r.stderr and not out.exists()
    assert "capture" not in r.stderr and "database" not in r.stderr  # no Hessian, nothing solved
    early = float(r.stderr.split("the best reachable is ")[1].split("x")[0])
    n = len(level_set("latency"))
    with Database(tmp_path / "x.onnx.db") as db:
        assert db.entries() == []
        # each layer at each level, the whole model at dense and each level but w8a8dyn (the user's model is the
        # dense one: no affine node to fold, it is not timed apart); at the
        # largest share (0.5) alone, fc0's group alone (fc0 → fc1) and the chain fc0 → fc1 → fc2: fc0 narrowed, fc1
        # narrowed on its inputs and on both sides, fc2 on its inputs, each at every level but the two low-rank ones,
        # which do not combine with a cut (fc0 and fc1 on its inputs are then 64×64 Gemms: one signature); the model
        # cut (the chain whole, and fc0's group alone) at dense, w8a8 and w4
        # then, as 1000x is beyond that too, the same at the deeper cuts' largest share (0.75)
        assert db.conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0] == 4 * n - 1 + 2 * (3 * (n - 2) + 2 * 3)
        # a speedup asked within EARLY of that reach times every share before it is refused, the timings kept reused
        opt, levels = Options(), level_set("latency")
        prep = load(MODEL, CALIB, opt)
        shares = DEFAULT_SHARES + DEEP_SHARES
        first = reachable(prep, db, MODEL, levels, opt, shares=shares, refuse_above=1000)
        assert first["shares_timed"] == [0.75] and first["speedup"] == pytest.approx(early, abs=0.006)
        full = reachable(prep, db, MODEL, levels, opt, shares=shares, refuse_above=EARLY * early * 0.99)
        # more plans, none slower (a uniform plan counts where it beats the DP's fastest by a margin)
        assert full["shares_timed"] == list(shares) and full["speedup"] >= WHOLE_MARGIN * first["speedup"]
        # the other shares: fc0, fc1's inputs and both sides, fc2's inputs at each; two shapes met twice (fc0 and
        # fc1's inputs at 0.5 are 64×64; fc1 on both sides at 0.5 is fc0 at 0.75, 32×64)
        assert db.conn.execute("SELECT COUNT(*) FROM latency").fetchone()[0] == \
            4 * n - 1 + (6 * 4 - 2) * (n - 2) + 2 * 6 * 3
        assert reachable(prep, db, MODEL, levels, opt, shares=shares)["speedup"] == full["speedup"]


def test_the_reachable_figure_is_the_plans_and_its_timings_are_reused(tmp_path, monkeypatch):
    from onnxobc.budget import compress_to_budget, make_plan
    from onnxobc.channel_levels import DEFAULT_SHARES, with_share
    from onnxobc.db.build import build

    opt = Options()
    levels = level_set("latency")
    prep = load(MODEL, CALIB, opt)
    with Database(tmp_path / "db") as db:
        reach = reachable(prep, db, MODEL, levels, opt)
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt)
        with pytest.raises(OptionError, match=f"the best reachable is {reach['speedup']:.2f}x"):
            make_plan(full, db, MODEL, opt, "speedup", "1000x", levels, measure=False, whole=reach["whole"])
        # with channel removal: a narrowed layer is timed only at the levels a cut layer can take (low-rank
        # cannot), so the fastest unit counted is one a plan can make
        reach = reachable(prep, db, MODEL, levels, opt, shares=DEFAULT_SHARES)
        channels = reach["channels"]
        assert channels.units and all(lv.dense or with_share(lv, s) is not None
                                      for by_share in channels.seconds.values() for s, layers in by_share.items()
                                      for t in layers.values() for lv in t)
        channels.measure_losses(full, opt)
        with pytest.raises(OptionError, match=f"the best reachable is {reach['speedup']:.2f}x"):
            make_plan(full, db, MODEL, opt, "speedup", "1000x", levels, measure=False, channels=channels,
                      whole=reach["whole"])  # as the budget plans: the uniform plans faster than the DP's by 2 %

    def untimed(*a, **k):
        raise AssertionError("a layer was timed again")

    monkeypatch.setattr(costs, "layer_latencies", untimed)  # the budget finds every layer timed by reach
    report = compress_to_budget(MODEL, tmp_path / "o.onnx", CALIB, opt, "speedup", "1.01x", tmp_path / "db",
                                best_effort=True)
    assert report["budget"]["reachable_speedup"] > 1 and "measured_speedup" in report["budget"]


def test_a_reused_database_predicts_on_the_clock_its_levels_were_timed_on(tmp_path, monkeypatch):
    """The whole model timed again under another machine load (three times slower here) leaves the
    plan's prediction as it was: the levels were timed beside the whole model when the database was
    built, and the prediction takes that time, not a fresh one under different conditions."""
    from onnxobc.budget import make_plan
    from onnxobc.db.build import build

    opt = Options()
    levels = level_set("latency")
    prep = load(MODEL, CALIB, opt)
    real, taken, predicted = costs.latencies, {}, []
    with Database(tmp_path / "db") as db:
        reachable(prep, db, MODEL, levels, opt)
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt)
        for load_factor in (1.0, 3.0):
            monkeypatch.setattr(costs, "latencies", lambda *a, f=load_factor, **k: {
                n: f * s for n, s in taken.setdefault("t", real(*a, **k)).items()})
            plan = make_plan(full, db, MODEL, opt, "speedup", "1.01x", levels, best_effort=True)
            predicted.append((plan["budget"]["predicted_speedup"], plan["budget"]["layer_sum_over_model"]))
    assert predicted[0] == pytest.approx(predicted[1], rel=1e-12)


def test_levels_no_faster_than_dense_are_not_solved(tmp_path):
    from onnxobc.budget import compress_to_budget
    from onnxobc.channel_levels import DEFAULT_SHARES
    from onnxobc.db.profile import signature
    from onnxobc.timing import activation_shapes

    opt = Options()
    report = compress_to_budget(MODEL, tmp_path / "o.onnx", CALIB, opt, "speedup", "1.01x", tmp_path / "db",
                                best_effort=True)
    prep = load(MODEL, CALIB, opt)
    shapes = activation_shapes(prep, opt)
    with Database(tmp_path / "db") as db:
        stored = {(e["layer"], e["level"]) for e in db.entries()}
        reach = reachable(prep, db, MODEL, level_set("latency"), opt, shares=DEFAULT_SHARES)  # the cached timings
        useful = reach["useful"]
        faster_whole = {parse(n).per_layer() for n in reach["whole"]}
        for layer in prep.layers:
            sig = signature(layer, (8,) + tuple(shapes[layer.activations[0]]))
            dense = db.latency(opt.target.cache_key(), sig, "dense")
            for lv in level_set("latency"):
                solved = (layer.weight, lv.name) in stored
                assert solved == (lv in useful[layer.weight])
                if solved and not lv.dense:  # faster alone, or in a uniform plan faster than the DP's
                    assert db.latency(opt.target.cache_key(), sig, lv.name) < dense or lv in faster_whole
    for row in report["layers"]:  # each layer's error alone, from the loss the plan weighed
        assert ("output_error" in row) == (row["level"] != "dense")
    fit = sum(len(v) for v in useful.values())
    assert report["database"]["computed"] == fit == len(stored)
    assert report["database"]["slower_than_dense"] + fit + 3 == 3 * len(level_set("latency"))  # 3 Gemms: no dyn


def test_in_model_factors_scale_each_levels_saving():
    from onnxobc.costs import in_model, in_model_factors

    d, a, b = parse("dense"), parse("w8a8dyn"), parse("w8a8")
    alone = [{d: 4.0, a: 2.0, b: 5.0}, {d: 2.0, a: 1.0, b: 3.0}, {d: 1.0, b: 2.0}]  # a saves 2 + 1 alone
    uniform = {"dense": 7.0, "w8a8dyn": 2.5, "w8a8": 9.0}  # inside the model a saves 4.5: 1.5 times as much
    factors = in_model_factors(alone, uniform, scale=1.0)
    assert factors == {"w8a8dyn": pytest.approx(1.5), "w8a8": 1.0}  # b saves nothing alone: kept as timed
    assert in_model_factors(alone, uniform, scale=0.5)["w8a8dyn"] == pytest.approx(3.0)
    adjusted = in_model(alone, factors)
    assert adjusted == [{d: 4.0, a: pytest.approx(1.0), b: 5.0}, {d: 2.0, a: pytest.approx(0.5), b: 3.0}, alone[2]]
    # every layer at a adds up to the whole model at a, as measured
    assert uniform["dense"] - sum(s[d] - s[a] for s in adjusted if a in s) == pytest.approx(uniform["w8a8dyn"])
    assert in_model(alone, {"w8a8dyn": 3.0})[0][a] == 0.0  # never below nothing


def test_whole_models_are_timed_as_many_at_a_time_as_memory_holds(tmp_path, monkeypatch):
    """A model as large as BERT-base times its uniform models in groups that fit half the memory
    budget, each beside the dense one; every model is timed once and the figures stay on one clock."""
    from onnxobc import reach

    assert reach.models_at_once(2**30, Options(max_memory=8)) == 1  # 4 GiB over 3 GiB a model: one beside dense
    assert reach.models_at_once(100 * 2**20, Options(max_memory=8)) == 12
    opt = Options()
    prep = load(MODEL, CALIB, opt)
    with Database(tmp_path / "db") as db:
        together = reachable(prep, db, MODEL, level_set("latency"), opt)["uniform"]
    groups = []
    real = opt.target.latencies
    monkeypatch.setattr(reach, "models_at_once", lambda *a: 1)
    monkeypatch.setattr(type(opt.target), "latencies", lambda self, models, *a, **k: groups.append(set(models)) or
                        real(models, *a, **k))
    seen = []
    with Database(tmp_path / "db2") as db:
        grouped = reachable(prep, db, MODEL, level_set("latency"), opt, lambda *a: seen.append(a))["uniform"]
    # the whole models' progress: one pass, each model written then each round of its timing, to the end
    whole = [(done, total, detail) for stage, done, total, detail in seen if "whole model" in detail]
    assert [d for d, _, _ in whole] == sorted(d for d, _, _ in whole) and whole[-1][0] == whole[-1][1]
    assert len({t for _, t, _ in whole}) == 1 and any("round 5 of 5" in d for _, _, d in whole)
    assert set(grouped) == set(together) and len(grouped) > 2 and all(v > 0 for v in grouped.values())
    beside = sorted(n for g in groups if len(g) == 2 and "dense" in g for n in g - {"dense"})
    assert beside == sorted(set(grouped) - {"dense"})  # each whole model timed once, beside the dense one


def test_timing_spares_runs_where_they_are_long():
    """Costs are timed with fewer runs of a model whose runs are long (about `seconds` of them, at
    least one a round and one warm-up); without `seconds` every run asked for is made."""
    import time

    from onnxobc.runtimes.onnxruntime import compare_latency

    class Slow:
        def __init__(self, run_s):
            self.run_s, self.calls = run_s, 0

        def run(self, names, feed):
            self.calls += 1
            time.sleep(self.run_s)

    long, short = Slow(0.05), Slow(0.001)
    got = compare_latency({"long": long, "short": short}, {}, rounds=2, repeats=10, warmup=3, seconds=0.2)
    assert long.calls <= 2 + 2 * 2 and short.calls == 3 + 2 * 10  # 0.2 s: two warm-ups, two runs a round
    assert got["long"] >= 0.05 and got["short"] < got["long"]
    full = Slow(0.05)
    compare_latency({"full": full}, {}, rounds=2, repeats=3, warmup=3)
    assert full.calls == 3 + 2 * 3


def test_the_users_model_is_timed_beside_the_levels_where_nodes_were_folded(tmp_path):
    """A model whose per-channel Mul folds into its Conv is timed as given beside the folded dense
    one, and the speedup is against it; a model with nothing folded is the dense one."""
    import onnx
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from onnxobc.costs import SOURCE, uniform_key
    from onnxobc.db.build import model_key
    from onnxobc.timing import timing_batch

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "W")
    s = numpy_helper.from_array(rng.standard_normal((16, 1, 1)).astype(np.float32), "s")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["z"], pads=[1, 1, 1, 1]),
                               helper.make_node("Mul", ["z", "s"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16, 16, 16])], [w, s])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((16, 8, 16, 16)).astype(np.float32))
    opt, levels, folded = Options(), level_set("latency"), []
    for path, calib in ((tmp_path / "m.onnx", tmp_path / "c.npz"), (pathlib.Path(MODEL), CALIB)):
        prep = load(path, calib, opt)
        folded.append(prep.folded)
        with Database(tmp_path / f"{path.stem}.db") as db:
            reach = reachable(prep, db, path, levels, opt)
            stored = db.latency(opt.target.cache_key(), uniform_key(model_key(path), timing_batch(prep, opt)), SOURCE)
        if prep.folded:
            assert stored is not None and reach["source_seconds"] == stored
        else:
            assert stored is None and reach["source_seconds"] == reach["uniform"]["dense"]
        assert reach["speedup"] == pytest.approx(reach["source_seconds"] / reach["fastest_seconds"])
    assert folded == [1, 0]


def wide_mlp(tmp_path) -> tuple:
    """An MLP 256 → 1024 → 1024 → 256 with a calibration batch of 96: its time (milliseconds) is its
    multiply-adds, so a deeper cut is plainly faster (on the digits MLP, or at a tenth of a
    millisecond, per-run overhead and a burst of load blur them)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims, nodes, inits, x = (256, 1024, 1024, 256), [], [], "x"
    for k in range(3):
        inits += [numpy_helper.from_array((rng.standard_normal(dims[k:k + 2]) / dims[k] ** 0.5).astype(np.float32),
                                          f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(dims[k + 1]).astype(np.float32) * 0.1, f"b{k}")]
        nodes += [helper.make_node("MatMul", [x, f"w{k}"], [f"m{k}"], name=f"fc{k}"),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"], name=f"bias{k}")]
        x = f"a{k}"
        if k < 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"], name=f"relu{k}"))
            x = f"r{k}"
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 256])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "wide.onnx")
    np.savez(tmp_path / "wide.npz", x=rng.standard_normal((128, 256)).astype(np.float32))
    return str(tmp_path / "wide.onnx"), str(tmp_path / "wide.npz")


@pytest.mark.slow  # two minutes: timed at a size where the timings' noise does not blur the cuts
def test_cuts_beyond_half_are_offered_only_where_cuts_up_to_half_fall_short(tmp_path):
    from onnxobc.budget import compress_to_budget
    from onnxobc.channel_levels import DEEP_SHARES, DEFAULT_SHARES

    model, calib = wide_mlp(tmp_path)
    opt, levels = Options(batch_size=128, method="gptq"), level_set("latency")
    with Database(tmp_path / "db") as db:  # the reaches, on the timings the budget then reads from the same database
        def reach(shares, refuse_above=None):
            return reachable(load(model, calib, opt), db, model, levels, opt, shares=shares,
                             refuse_above=refuse_above)["speedup"]

        half, deep = reach(DEFAULT_SHARES), reach(DEFAULT_SHARES + DEEP_SHARES)
        # each unit's largest cut alone, as the budget times it first
        half_first, deep_first = reach(DEFAULT_SHARES, 1000), reach(DEFAULT_SHARES + DEEP_SHARES, 1000)
    assert deep > 1.1 * half and deep_first > 1.1 * half  # the deeper cuts reach further
    within = compress_to_budget(model, tmp_path / "a.onnx", calib, opt, "speedup",
                                f"{0.9 * min(half, half_first):.3f}x", db_dir=tmp_path / "db")["budget"]
    assert within["channel_shares"] == list(DEFAULT_SHARES)
    beyond = compress_to_budget(model, tmp_path / "b.onnx", calib, opt, "speedup",
                                f"{half + 0.5 * (min(deep, deep_first) - half):.3f}x", db_dir=tmp_path / "db")
    assert beyond["budget"]["channel_shares"] == list(DEFAULT_SHARES + DEEP_SHARES)
    assert beyond["budget"]["predicted_speedup"] > half  # a plan no cut of up to half could make
    assert any(parse(n).channels and parse(n).channels > 0.5 for n in beyond["plan"].values())
    assert (tmp_path / "b.onnx").exists()
