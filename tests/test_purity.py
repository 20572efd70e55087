"""The solver is pure array code: no ONNX, no onnxruntime, anywhere under onnxobc/solver."""

import ast
import pathlib

SOLVER = pathlib.Path(__file__).parents[1] / "onnxobc" / "solver"
FORBIDDEN = ("onnx", "onnxruntime")


def test_solver_imports_no_onnx():
    offenders = []
    for path in SOLVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert list(SOLVER.rglob("*.py")), "solver package not found"
    assert not offenders, offenders
