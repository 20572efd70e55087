"""The import contract: the package's parts import only down the data flow (DESIGN.md), never a
private name of another module, and the solvers and the solve stage hold no ONNX."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[1] / "onnxobc"
# lowest first: a part may import parts of earlier rows, and modules of its own package
ORDER = [
    {"errors", "faults"},
    {"atomic", "progress", "solver", "dp", "protos"},  # solver: pure array code
    {"sessions", "graph"},  # onnxruntime as the engine; the only code that edits ONNX protos
    {"runtimes", "calib", "memory"},
    {"families"},  # the compression families: solving (through solver) and writing (through graph)
    {"options", "solve"},
    {"prepare", "export", "verify", "cluster", "channels", "fidelity", "deadline"},
    {"schedule", "sequential", "timing"},
    {"slow_int8", "recut"},  # recut: sequential.py's waves carried to channel cuts
    {"pipeline", "db", "channel_units"},
    {"costs", "channel_levels"},
    {"reach", "whole_plans"},
    {"budget"},
    {"tradeoff"},
    {"cli"},
    {"__main__"},
]
RANK = {part: i for i, row in enumerate(ORDER) for part in row}
ONNX = ("onnx", "onnxruntime")


def imported(node) -> list:
    """The modules an AST node imports (none unless it is an import)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""] if isinstance(node, ast.ImportFrom) else []


def modules():
    """(dotted name, path, AST) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text())


def targets(name: str, path: pathlib.Path, node) -> list:
    """The onnxobc modules an import node reaches (relative imports resolved)."""
    if isinstance(node, ast.ImportFrom) and node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = package[: len(package) - node.level + 1]
        if node.module:
            return [".".join(base + node.module.split("."))]
        return [".".join(base + [a.name]) for a in node.names]
    return [m for m in imported(node) if m == "onnxobc" or m.startswith("onnxobc.")]


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_part_is_placed():
    parts = {part_of(name) for name, _, _ in modules()} - {"onnxobc"}
    assert parts <= set(RANK), f"not in the contract: {sorted(parts - set(RANK))}"


def test_imports_point_down_the_flow():
    offenders = []
    for name, path, tree in modules():
        for node in ast.walk(tree):
            for target in targets(name, path, node):
                a, b = part_of(name), part_of(target)
                if a != b and b != "onnxobc" and RANK[b] >= RANK[a]:
                    offenders.append(f"{name} imports {target}")
    assert not offenders, offenders


def test_no_import_cycles():
    graph = {}
    for name, path, tree in modules():
        graph[name] = {t for node in ast.walk(tree) for t in targets(name, path, node)}
    seen, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError(" → ".join(stack[stack.index(m):] + [m]))
        if m in seen or m not in graph:
            return
        stack.append(m)
        for t in sorted(graph[m]):
            visit(t)
        stack.pop()
        seen.add(m)

    for m in sorted(graph):
        visit(m)


def test_no_private_names_across_modules():
    offenders = [f"{name}: {node.module}.{a.name}" for name, path, tree in modules() for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module != "__future__"
                 for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders


def test_solvers_and_the_solve_stage_hold_no_onnx():
    offenders = []
    for name, path, tree in modules():
        if part_of(name) not in ("solver", "solve"):
            continue
        for node in ast.walk(tree):
            offenders += [f"{name}: {m}" for m in imported(node) if m.split(".")[0] in ONNX]
            offenders += [f"{name}: {t}" for t in targets(name, path, node) if part_of(t) == "graph"]
    assert not offenders, offenders


def test_contract_catches_an_upward_import(tmp_path):
    """The checks above can fail: an import from graph up to db is an offence."""
    tree = ast.parse("from ..db.store import Database\n")
    (node,) = tree.body
    (target,) = targets("onnxobc.graph.write", PACKAGE / "graph" / "write.py", node)
    assert target == "onnxobc.db.store" and RANK[part_of(target)] >= RANK["graph"]
