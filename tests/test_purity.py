"""The solver is pure array code: no ONNX, no onnxruntime, anywhere under onnxobc/solver."""

import ast
import pathlib

SOLVER = pathlib.Path(__file__).parents[1] / "onnxobc" / "solver"
FORBIDDEN = ("onnx", "onnxruntime")


def imported(node) -> list:
    """The modules an AST node imports (none unless it is an import)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""] if isinstance(node, ast.ImportFrom) else []


def test_solver_imports_no_onnx():
    offenders = []
    for path in SOLVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            offenders += [f"{path.name}: {n}" for n in imported(node) if n.split(".")[0] in FORBIDDEN]
    assert list(SOLVER.rglob("*.py")), "solver package not found"
    assert not offenders, offenders
