"""The corpus of bad and odd inputs (corpus.py): each case ends as expected, with no traceback,
no partial output, no temporary file left behind and its inputs untouched."""

import hashlib
import importlib.util

import onnx
import pytest
from corpus import CASES

from onnxobc.cli import main


def _files(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, tmp_path, capsys):
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} is not installed (pip install --no-deps {case.needs.replace('_', '-')})")
    args = case.make(tmp_path)
    out = tmp_path / "out.onnx"
    before = _files(tmp_path)
    code = main(args)
    stdout, stderr = capsys.readouterr()
    assert "Traceback" not in stdout + stderr
    after = _files(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "an input was modified"
    assert not [p for p in after if p.name.endswith(".tmp")], "a temporary file was left behind"
    if case.outcome == "error":
        assert code == 2, stderr
        last = stderr.strip().splitlines()[-1]  # after any progress lines
        assert last.startswith("onnxobc: error: ") and case.says in last, stderr
        assert set(after) == set(before), "an error left a file behind"
    else:
        assert code == 0, stderr
        assert case.says in stdout, stdout
        onnx.checker.check_model(onnx.load(out))
