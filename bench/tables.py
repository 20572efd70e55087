"""Markdown tables for the benchmarks' output; every table and note printed is kept for evidence.record."""

from __future__ import annotations

import sys

PRINTED = []  # {"title", "header", "rows"} of every table this process printed
NOTES = []  # what the tables were measured on, as printed


def note(text: str) -> None:
    """Print a line saying what the tables measure; evidence.record keeps it with them."""
    NOTES.append(text)
    print(text)


def print_table(header, rows, title: str | None = None) -> None:
    rows = [[str(c) for c in r] for r in rows]
    PRINTED.append({"title": title, "header": [str(h) for h in header], "rows": rows})
    if title:
        print(f"\n{title}")
    print(markdown(header, rows))
    sys.stdout.flush()


def markdown(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
                     for r in [header, ["-" * w for w in widths]] + list(rows))
