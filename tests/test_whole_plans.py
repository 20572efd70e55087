"""Uniform plans beside the DP's: each is every layer at one level (every unit cut at one share),
its loss the DP's sum and its time the whole model's as timed; the budget takes one only where no
plan of the DP's meets the target: the one of least loss that meets it, else (best effort) the
one of least loss close to the fastest."""

import pathlib
import types

import pytest

from onnxobc.channel_levels import ChannelLevels
from onnxobc.channel_units import Unit
from onnxobc.costs import Table, uniform_key
from onnxobc.db.build import build, model_key
from onnxobc.db.levels import Level, level_set, parse
from onnxobc.db.profile import signature
from onnxobc.db.store import Database
from onnxobc.errors import OptionError
from onnxobc.options import Options
from onnxobc.prepare import capture, load
from onnxobc.reach import reachable
from onnxobc.timing import activation_shapes
from onnxobc.whole_plans import uniform_plans

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")
D, Q, DYN = Level(), parse("w8a8"), parse("w8a8dyn")


def layer(name):
    return types.SimpleNamespace(weight=name)


def test_a_uniform_plan_sums_the_losses_and_keeps_layers_it_does_not_fit_dense():
    table = Table([layer("a"), layer("b"), layer("c")], [[D, Q, DYN], [D, Q], [D, DYN]],
                  [[0.0, 1.0, 2.0], [0.0, 4.0], [0.0, 8.0]], [[3.0, 1.0, 2.0], [3.0, 1.0], [3.0, 2.0]])
    plans = {p.name: p for p in uniform_plans(table, {"dense": 9.0, "w8a8": 5.0, "w8a8dyn": 6.0, "c0.250": 7.0})}
    assert set(plans) == {"w8a8", "w8a8dyn"}  # no channel units: the cut model is no plan
    assert plans["w8a8"].levels == {"a": Q, "b": Q, "c": D} and plans["w8a8"].loss == 5.0
    assert plans["w8a8"].seconds == 5.0
    assert plans["w8a8dyn"].levels == {"a": DYN, "b": D, "c": DYN} and plans["w8a8dyn"].loss == 10.0


def test_a_cut_uniform_plan_adds_each_units_loss_once_and_skips_units_never_measured():
    table = Table([layer("a"), layer("b"), layer("c")], [[D, Q], [D, Q], [D, Q]],
                  [[0.0, 1.0], [0.0, 2.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    unit = Unit([types.SimpleNamespace(members=["a", "b"])], {0.25: (2,), 0.5: (4,)})
    channels = ChannelLevels([unit], {}, {}, losses={0: {0.25: 16.0, 0.5: 32.0}})
    cut = parse("c0.250+w8a8")
    plans = {p.name: p for p in uniform_plans(table, {"dense": 9.0, "c0.250+w8a8": 3.0, "c0.500": 4.0}, channels)}
    assert plans["c0.250+w8a8"].levels == {"a": cut, "b": cut, "c": Q}
    assert plans["c0.250+w8a8"].loss == 1.0 + 2.0 + 4.0 + 16.0
    assert plans["c0.500"].levels == {"a": parse("c0.500"), "b": parse("c0.500"), "c": D}
    assert plans["c0.500"].loss == 32.0
    unmeasured = ChannelLevels([unit], {}, {}, losses={})  # its consumer saw only zeros: never cut
    assert uniform_plans(table, {"dense": 9.0, "c0.250+w8a8": 3.0}, unmeasured) == []


FAST = 50  # the whole model at lr0.250 timed this many times faster than dense (far beyond any sum of its layers)
LR = parse("lr0.250")  # a level of much more loss than the DP's plans for small targets


def timed_whole(db, prep, opt, times: dict) -> None:
    """The database's timings edited: the whole model at each level of `times` (name → share of
    the dense model's time) that fast, its layers each no faster alone than dense (so that no sum
    of the layers' times comes near it, however the real timings fall)."""
    key, runtime = uniform_key(model_key(pathlib.Path(MODEL)), 8), opt.target.cache_key()
    shapes = activation_shapes(prep, opt)
    for name, share in times.items():
        db.put_latency(runtime, key, name, share * db.latency(runtime, key, "dense"))
        for layer in prep.layers:
            sig = signature(layer, (8,) + tuple(shapes[layer.activations[0]]))
            db.put_latency(runtime, sig, name, db.latency(runtime, sig, "dense"))


@pytest.fixture(scope="module")
def planned_db(tmp_path_factory):
    """The shipped model's database after reach and build, without channel levels, with the whole
    model at lr0.250 timed as if it ran FAST times faster than dense."""
    opt, levels = Options(), level_set("latency")
    path = tmp_path_factory.mktemp("whole") / "db"
    prep = load(MODEL, CALIB, opt)
    with Database(path) as db:
        reachable(prep, db, MODEL, levels, opt)
        timed_whole(db, prep, opt, {LR.name: 1 / FAST})
        reach = reachable(prep, db, MODEL, levels, opt)  # from the timings cached, that one included
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt, only=reach["useful"])
    return path, full, reach


def test_a_level_whose_uniform_plan_is_faster_is_solved_for_every_layer_it_fits(planned_db):
    _, full, reach = planned_db
    assert reach["speedup"] == pytest.approx(FAST, rel=0.01) and LR.name in reach["whole"]  # the fastest
    assert all(LR in reach["useful"][l.weight] for l in full.layers)  # every Gemm, faster alone or not


def test_the_budget_takes_a_uniform_plan_only_where_the_dps_plans_fall_short(planned_db):
    from onnxobc.budget import make_plan

    path, full, reach = planned_db
    opt, levels = Options(), level_set("latency")
    with Database(path) as db:
        def plan(target, whole=reach["whole"], **k):
            return make_plan(full, db, MODEL, opt, "speedup", target, levels, measure=False, only=reach["useful"],
                             whole=whole, **k)

        small = plan("1.01x")  # the uniform plan meets it too, but the DP's does
        assert small["budget"]["uniform_plan"] is None and set(small["plan"].values()) != {LR.name}
        at20 = plan("20x")  # no sum of the layers' times reaches 20x: only the uniform plan does
        assert at20["budget"]["uniform_plan"] == LR.name and set(at20["plan"].values()) == {LR.name}
        assert at20["budget"]["predicted_speedup"] == pytest.approx(FAST, rel=0.01)
        with pytest.raises(OptionError, match=f"the best reachable is {reach['speedup']:.2f}x"):
            plan(f"{2 * FAST}x")
        assert plan(f"{2 * FAST}x", best_effort=True)["budget"]["uniform_plan"] == LR.name  # the fastest
        with pytest.raises(OptionError, match="cannot be met"):  # a uniform plan reach did not solve is no candidate
            plan("20x", whole=set())


def test_a_best_effort_takes_the_least_loss_near_the_fastest(tmp_path):
    """Best effort takes the plan of least loss within BEST_EFFORT of the best reachable speed,
    not the fastest: w4 timed whole at 0.97 of lr0.250's speed is taken (less loss); at 0.9 of it,
    lr0.250 is."""
    from onnxobc.budget import BEST_EFFORT, make_plan

    opt, levels, w4 = Options(), level_set("latency"), parse("w4")
    prep = load(MODEL, CALIB, opt)
    with Database(tmp_path / "db") as db:
        reachable(prep, db, MODEL, levels, opt)
        timed_whole(db, prep, opt, {LR.name: 1 / FAST, w4.name: 1 / (0.97 * FAST)})
        reach = reachable(prep, db, MODEL, levels, opt)
        assert {LR.name, w4.name} <= reach["whole"]
        full = capture(prep, opt, activation_ranges=True)
        build(full, db, MODEL, levels, opt, only=reach["useful"])

        def plan():
            return make_plan(full, db, MODEL, opt, "speedup", f"{2 * FAST}x", levels, best_effort=True,
                             measure=False, only=reach["useful"], whole=reach["whole"])["budget"]

        near = plan()
        assert near["uniform_plan"] == w4.name and near["predicted_speedup"] >= BEST_EFFORT * reach["speedup"]
        timed_whole(db, prep, opt, {w4.name: 1 / (0.9 * FAST)})
        assert plan()["uniform_plan"] == LR.name
