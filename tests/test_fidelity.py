"""Each layer's error at the model's outputs, alone: the figure the summary gives equals the
relative output error of the model with that one layer swapped for its solved weights (and bias
shift), run by onnxruntime, computed here from the graph by hand."""

import json
import pathlib

import numpy as np
import pytest
from test_compress import onnxobc

from onnxobc.fidelity import MAX_SAMPLES, output_errors
from onnxobc.graph.bias import add_output_shift
from onnxobc.graph.write import set_weights
from onnxobc.options import Options
from onnxobc.prepare import prepare, problem
from onnxobc.sessions import session
from onnxobc.solve import solve_layer

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")


def by_hand(model, layer, solved, data) -> float:
    one = set_weights(model, {layer.weight: solved.weight})
    add_output_shift(one, layer, solved.shift)
    ref, got = session(model).run(None, data), session(one).run(None, data)
    return float(np.sqrt(sum(np.sum((g.astype(np.float64) - r) ** 2) / np.sum(r.astype(np.float64) ** 2)
                             for g, r in zip(got, ref))))


@pytest.mark.parametrize("fields", [{"wbits": 3}, {"sparsity": 0.7}, {"rank": 0.25}])
def test_output_error_alone_is_the_swapped_models_error(fields):
    opt = Options(**fields)
    prep = prepare(MODEL, CALIB, opt)
    solved = {l.weight: solve_layer(problem(prep, l), opt) for l in prep.layers}
    errors = output_errors(prep, solved, opt)
    data = {k: v[:MAX_SAMPLES] for k, v in prep.held.items()}
    assert set(errors) == {l.weight for l in prep.layers}
    for layer in prep.layers:
        assert errors[layer.weight] == pytest.approx(by_hand(prep.model, layer, solved[layer.weight], data), rel=1e-4)
    assert len(set(errors.values())) == len(errors) and min(errors.values()) > 0


def test_the_summary_and_report_give_it_per_layer(tmp_path):
    r = onnxobc("compress", MODEL, str(tmp_path / "o.onnx"), "--calib", CALIB, "--wbits", "3", "--report",
                str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert "output error alone" in r.stdout
    rows = json.loads((tmp_path / "r.json").read_text())["layers"]
    assert all(row["output_error"] > 0 for row in rows)
    for row in rows:
        assert f"{row['output_error']:.4g}" in next(line for line in r.stdout.splitlines()
                                                    if line.startswith(row["weight"]))
