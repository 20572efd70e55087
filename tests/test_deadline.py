"""The time budget (--max-time): predicted exact time per layer from its shape and families, the
longest layers given GPTQ/SparseGPT until the rest fits (fewest layers, checked against every
subset), and the CLI's defaults: a budget unless --method is named, outputs equal to all-exact
when it affords everything and to --method gptq when it affords nothing."""

import dataclasses
import itertools
import pathlib

import numpy as np
import pytest
from test_compress import onnxobc

from onnxobc import deadline, families
from onnxobc.errors import OptionError
from onnxobc.options import Options, parse_duration
from onnxobc.solver import cost

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")


@dataclasses.dataclass
class Shape:
    weight: str
    rows: int
    cols: int
    groups: int = 1


def test_durations():
    assert [parse_duration(t) for t in ("10m", "90s", "1.5h", "600", "2min", "none")] == [600, 90, 5400, 600, 120,
                                                                                         None]
    for bad in ("10x", "-1m", "0", "m"):
        with pytest.raises(OptionError, match="max_time"):
            parse_duration(bad)


def test_exact_passes_per_family():
    assert families.exact_passes(Options(wbits=4)) == 1
    assert families.exact_passes(Options(sparsity=0.5, wbits=4)) == 2
    assert families.exact_passes(Options(nm=(2, 4))) == 1
    assert families.exact_passes(Options(wbits=4, outliers=0.01)) == 2 * 3  # alternated 3 rounds
    assert families.exact_passes(Options(rank=0.5)) == 0  # closed form
    assert families.exact_passes(Options(rank=0.5, wbits=4)) == 1
    assert families.exact_passes(Options(wbits=4, method="gptq")) == 0
    assert cost.exact_work(64, 256, groups=2, passes=3) == pytest.approx(3 * 2 * 64 * (256**2 + 256**3 / 2800))


@pytest.mark.parametrize("seed", range(6))
def test_the_fewest_layers_go_fast_and_the_rest_fits(monkeypatch, seed):
    monkeypatch.setattr(cost, "seconds_per_work", lambda device: 1e-9)
    rng = np.random.default_rng(seed)
    layers = [Shape(f"w{i}", int(rng.integers(8, 512)), int(rng.integers(8, 1024))) for i in range(7)]
    seconds = {l.weight: cost.exact_work(l.rows, l.cols) * 1e-9 for l in layers}
    budget = float(rng.uniform(0.05, 0.9)) * sum(seconds.values())
    a = deadline.allot(layers, Options(wbits=4, max_time=budget))
    kept = sum(s for w, s in seconds.items() if w not in a.fast)
    assert kept <= budget and a.exact_seconds == pytest.approx(seconds)
    fewest = min(k for k in range(len(layers) + 1) for out in itertools.combinations(seconds, k)
                 if sum(seconds.values()) - sum(seconds[w] for w in out) <= budget)
    assert len(a.fast) == fewest
    assert a.fast == sorted(a.fast, key=seconds.get, reverse=True)
    for l in layers:
        assert a.settings[l.weight].method == ("gptq" if l.weight in a.fast else "exact")


def test_no_budget_or_an_obviously_ample_one_times_nothing(monkeypatch):
    def untimed(device):
        raise AssertionError("the machine was timed")

    monkeypatch.setattr(cost, "seconds_per_work", untimed)
    layers = [Shape("a", 64, 128), Shape("b", 10, 64)]
    for opt in (Options(wbits=4), Options(wbits=4, max_time=3600), Options(wbits=4, method="gptq", max_time=1e-9)):
        a = deadline.allot(layers, opt)
        assert a.fast == [] and all(s is opt for s in a.settings.values())


def compress(tmp_path, name, *args):
    out = tmp_path / f"{name}.onnx"
    r = onnxobc("compress", MODEL, str(out), "--calib", CALIB, "--wbits", "3", "--report",
                str(tmp_path / f"{name}.json"), *args)
    assert r.returncode == 0, r.stderr
    return out.read_bytes(), r


def test_cli_budget_defaults_and_outputs(tmp_path):
    import json

    exact, _ = compress(tmp_path, "exact", "--method", "exact")
    default, r = compress(tmp_path, "default")  # the digits model fits the default 10 minutes
    assert default == exact and json.loads((tmp_path / "default.json").read_text())["time_budget"]["max_time"] == 600
    assert "time budget" not in r.stdout
    gptq, _ = compress(tmp_path, "gptq", "--method", "gptq")
    none_afforded, r = compress(tmp_path, "tight", "--max-time", "1e-9s")
    assert none_afforded == gptq
    assert "time budget" in r.stdout and "3 layers, the longest, got gptq" in r.stdout
    tight = json.loads((tmp_path / "tight.json").read_text())
    assert all("instead of exact: the time budget did not afford" in row["note"] for row in tight["layers"])
    assert any("sequential auto: solved independently only" in n for n in tight["notes"])  # --wbits 3: auto's case
    assert json.loads((tmp_path / "exact.json").read_text()).get("time_budget") is None
    r = onnxobc("compress", MODEL, str(tmp_path / "x.onnx"), "--calib", CALIB, "--wbits", "3", "--max-time", "soon")
    assert r.returncode == 2 and "--max-time takes a duration" in r.stderr and not (tmp_path / "x.onnx").exists()


def test_a_budget_database_solved_fast_for_want_of_time_is_solved_exactly_when_time_allows(tmp_path):
    import hashlib

    from onnxobc.db.store import Database

    def budget(name, *args, db="db"):
        out = tmp_path / f"{name}.onnx"
        r = onnxobc("compress", MODEL, str(out), "--calib", CALIB, "--size", "0.3", "--db", str(tmp_path / db),
                    *args)
        assert r.returncode == 0, r.stderr
        return hashlib.sha256(out.read_bytes()).hexdigest(), r

    def marked(db="db"):
        with Database(tmp_path / db) as d:
            return [e["row"].get("method") == "gptq" for e in d.entries() if e["level"] != "dense"]

    _, r = budget("tight", "--max-time", "1e-9s")
    assert "time budget" in r.stdout and all(marked())
    again, r = budget("default")  # the default budget affords the digits model: every marked entry solved again
    assert not any(marked()) and "time budget" not in r.stdout
    exact, _ = budget("exact", "--method", "exact", db="exact_db")
    assert again == exact
