"""Make bench/RESULTS.md from the JSON files the benches save in bench/results/ (evidence.py):
one section per file, its command, commit, date, machine and versions above its tables and
notes. Run it after a bench; never edit RESULTS.md by hand.

    python bench/results.py
"""

from __future__ import annotations

import ast
import json
import pathlib

from tables import markdown

BENCH = pathlib.Path(__file__).parent
ORDER = ["solver", "models", "lc_solvers", "pipeline", "w8a8_speed", "budget", "lowrank_budget", "tradeoff",
         "deepsparse_forms", "cluster", "fuzz", "outputs"]
HEAD = """# Measured results

Made by `python bench/results.py` from bench/results/*.json, which every bench writes when it
runs (bench/evidence.py): one section per command, with the commit, date, machine and versions
it ran with. Ratios are measured side by side in one run; expect noise of ±20 % on this shared
machine. Sections marked "converted" were recorded by hand in RESULTS.md before the benches
saved JSON; rerunning their command replaces them.
"""


def title_of(data: dict) -> str:
    if data.get("title"):
        return data["title"]
    script = BENCH / data["command"].split()[1].removeprefix("bench/")
    doc = ast.get_docstring(ast.parse(script.read_text())) or script.stem
    return doc.split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".")


def section(data: dict) -> str:
    m, v = data["machine"], data.get("versions", {})
    where = ", ".join(x for x in (m.get("cpu"), f"{m['cores']} cores" if m.get("cores") else None) if x)
    versions = ", ".join(f"{k} {x}" for k, x in v.items())
    lines = [f"## {title_of(data)}", "", f"`{data['command']}` — {data['date']}, commit {data['commit']}"
             + (f", {where}" if where else "") + (f"; {versions}" if versions else "") + "."
             + (f" {data['recorded']}." if data.get("recorded") else ""), ""]
    # a converted section keeps its text and tables in order ("blocks"); a bench run has its tables, then notes
    for block in _shown(data.get("blocks") or data["tables"] + data.get("notes", [])):
        if isinstance(block, str):
            lines += [block, ""]
            continue
        if block.get("title"):
            lines += [block["title"], ""]
        lines += [markdown(block["header"], block["rows"]), ""]
    return "\n".join(lines)


def _shown(blocks: list) -> list:
    """The blocks to print: a progress table ("so far") that the next table, with the same
    columns, repeats and extends is left out, and a last one loses its "so far" (the benches
    record only runs that finished)."""
    out = []
    for block, after in zip(blocks, blocks[1:] + [None]):
        if isinstance(block, dict) and "so far" in (block.get("title") or ""):
            if isinstance(after, dict) and after["header"] == block["header"]:
                continue
            block = {**block, "title": block["title"].replace("(so far)", "").replace("so far", "").strip() or None}
        out.append(block)
    return out


def key(path: pathlib.Path):
    bench = path.stem.split("--")[0]
    return (ORDER.index(bench) if bench in ORDER else len(ORDER), path.stem)


def main() -> None:
    files = sorted((BENCH / "results").glob("*.json"), key=key)
    text = HEAD + "\n" + "\n".join(section(json.loads(f.read_text())) for f in files)
    (BENCH / "RESULTS.md").write_text(text.rstrip() + "\n")
    print(f"bench/RESULTS.md: {len(files)} sections")


if __name__ == "__main__":
    main()
