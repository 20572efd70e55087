"""`onnxobc tradeoff`: one model per level, their errors and bytes as the pipeline reports them,
the JSON and the PNG, and bad input."""

import json
import pathlib

import pytest
from test_compress import onnxobc

from onnxobc.pipeline import Options, compress

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")


def test_tradeoff_writes_models_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "t"
    r = onnxobc("tradeoff", MODEL, "--calib", CALIB, "--out", str(out), "--levels", "w4", "s0.750", "lr0.500",
                "cb16", "ternary", "w4+o0.010", "c0.250")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "tradeoff.json").read_text())
    assert [p["level"] for p in rep["points"]] == ["w4", "s0.750", "lr0.500", "cb16", "ternary", "w4+o0.010", "c0.250"]
    assert rep["points"][-1]["family"] == "channels (structured)"
    assert rep["dense_seconds"] > 0
    for p in rep["points"]:
        path = pathlib.Path(p["path"])
        assert path.stat().st_size == p["bytes"] and p["speedup"] > 0 and p["layers_compressed"] == 3
        assert p["compression_ratio"] == pytest.approx(pathlib.Path(MODEL).stat().st_size / p["bytes"])
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same level through `compress`, solved independently as the curves' levels are, gives the same model error
    for level, opts in (("w4", dict(wbits=4)), ("lr0.500", dict(rank=0.5)), ("cb16", dict(codebook="16")),
                        ("w4+o0.010", dict(wbits=4, outliers=0.01)), ("c0.250", dict(channels=0.25))):
        direct = compress(MODEL, tmp_path / f"{level}.onnx", CALIB, Options(**opts, sequential="off"))
        point = next(p for p in rep["points"] if p["level"] == level)
        assert point["error"] == pytest.approx(direct["verification"]["relative_output_error"]["logits"], rel=1e-4)
    # a rerun reuses every solved layer
    r = onnxobc("tradeoff", MODEL, "--calib", CALIB, "--out", str(out), "--levels", "w4", "--no-plot")
    assert r.returncode == 0, r.stderr
    assert "w4" in r.stdout


@pytest.mark.parametrize("args,message", [(["--levels", "w9"], "weight bits (w<bits>) must be 2 to 8"),
                                          (["--levels", "lr0.500+w8a8"], "lr<share> is a compression of its own"),
                                          (["--levels", "fast"], "unknown level"),
                                          (["--levels", "c0.250+w4"], "takes channel removal alone")])
def test_tradeoff_bad_input(tmp_path, args, message):
    r = onnxobc("tradeoff", MODEL, "--calib", CALIB, "--out", str(tmp_path / "t"), "--no-plot", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "t" / "tradeoff.json").exists()
