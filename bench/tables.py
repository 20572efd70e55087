"""Markdown tables for the benchmarks' output."""

from __future__ import annotations

import sys


def print_table(header, rows, title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, ["-" * w for w in widths]] + list(rows):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()
