"""Layers whose int8 form runs slower than float stay float (slow_int8.py): the decision follows
the timings (here set by the test, since how fast a kernel runs is the machine's business, not a
test's), the model written with them float is a valid model whose other layers stay int8, and the
report and summary say what was timed and kept."""

import numpy as np
import onnx
import pytest
from test_dynamic import net  # noqa: F401 (fixture)

from onnxobc import slow_int8
from onnxobc.options import Options
from onnxobc.pipeline import compress


def timings(monkeypatch, slow: set, mixed_faster: bool):
    """Each layer in `slow` times 2 ms in int8 against 1 ms float alone, the others the reverse;
    the whole model with them float times 1 ms (else 3 ms) against 2 ms all int8."""
    calls = []

    def times_alone(prep, layer, forms, options, shape):
        calls.append(layer.weight)
        assert forms["float"] == (None, None) and forms["int8"][1] is options
        int8, dense = (2e-3, 1e-3) if layer.weight in slow else (1e-3, 2e-3)
        return {"int8": int8, "float": dense}

    def latencies(prep, options, **models):
        assert set(models) == {"int8", "mixed"}
        return {"int8": 2e-3, "mixed": 1e-3 if mixed_faster else 3e-3}

    monkeypatch.setattr(slow_int8, "times_alone", times_alone)
    monkeypatch.setattr(slow_int8, "latencies", latencies)
    return calls


def dequantized(model) -> set:
    return {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"} | \
        {n.input[1].removesuffix(".q") for n in model.graph.node if n.op_type == "MatMulInteger"}


@pytest.mark.parametrize("abits", [8, "dynamic"])
def test_slower_layers_stay_float_when_the_model_is_faster(net, tmp_path, monkeypatch, abits):  # noqa: F811
    path, calib = net
    calls = timings(monkeypatch, {"w2"}, mixed_faster=True)
    out = tmp_path / "o.onnx"
    rep = compress(path, out, calib, Options(wbits=7, abits=abits, smooth="off"))
    assert "w1" in calls and "w2" in calls
    entry = rep["slower_in_int8"]
    assert entry["kept_float"] and set(entry["slower_alone"]) == {"w2"}
    m = onnx.load(out)
    assert "w2" in {t.name for t in m.graph.initializer}  # its float weight, as in the input
    assert "w2" not in dequantized(m) and "w1" in dequantized(m)
    rows = {r["weight"]: r for r in rep["layers"]}
    assert rows["w2"]["storage"] == "float (int8 slower here)" and "int8 2.000 ms" in rows["w2"]["note"]
    assert rows["w1"]["storage"].startswith("int7")
    assert any("those stay float" in n for n in rep["notes"])
    assert max(rep["verification"]["relative_output_error"].values()) < 0.1


def test_int8_is_kept_when_the_whole_model_is_not_faster(net, tmp_path, monkeypatch):  # noqa: F811
    path, calib = net
    timings(monkeypatch, {"w2"}, mixed_faster=False)
    rep = compress(path, tmp_path / "o.onnx", calib, Options(wbits=7, abits=8, smooth="off"))
    assert rep["slower_in_int8"]["kept_float"] is False
    assert "w2" in dequantized(onnx.load(tmp_path / "o.onnx"))
    assert {r["weight"]: r for r in rep["layers"]}["w2"]["storage"].startswith("int7")
    assert any("all stay int8" in n for n in rep["notes"])


def test_keep_times_nothing_and_nothing_slower_changes_nothing(net, tmp_path, monkeypatch):  # noqa: F811
    path, calib = net
    calls = timings(monkeypatch, set(), mixed_faster=True)
    a = compress(path, tmp_path / "a.onnx", calib, Options(wbits=7, abits=8, smooth="off", slow_int8="keep"))
    assert calls == [] and "slower_in_int8" not in a
    b = compress(path, tmp_path / "b.onnx", calib, Options(wbits=7, abits=8, smooth="off"))
    assert calls and "slower_in_int8" not in b
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_slow_int8_is_checked():
    with pytest.raises(ValueError, match="slow_int8"):
        Options(wbits=8, abits=8, slow_int8="never").check()


def test_measured_for_real(net, tmp_path):  # noqa: F811
    """Unpatched: onnxruntime times the layers; whatever it measures, the output is consistent."""
    path, calib = net
    rep = compress(path, tmp_path / "o.onnx", calib, Options(wbits=7, abits=8, smooth="off"))
    m = onnx.load(tmp_path / "o.onnx")
    kept = rep.get("slower_in_int8", {}).get("kept_float")
    for w in ("w1", "w2"):
        float_here = kept and w in rep["slower_in_int8"]["slower_alone"]
        assert (w in dequantized(m)) != bool(float_here)
    np.testing.assert_array_less(list(rep["verification"]["relative_output_error"].values()), 0.1)
