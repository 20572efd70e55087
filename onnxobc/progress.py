"""Progress display for long stages: a bar redrawn in place on a terminal, a few milestone lines
(0 %, every 25 %, done) when writing to a log, for each pass of a stage (one that counts again
from the start or to another total)."""

from __future__ import annotations

import sys
import time

from .faults import point


class ProgressPrinter:
    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.stage, self.start, self.shown, self.last = None, 0.0, -1, (0, 0)

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        point()
        if stage != self.stage or total != self.last[1] or done < self.last[0]:  # a new stage, or a new pass of it
            self.stage, self.start, self.shown = stage, time.perf_counter(), -1
        self.last = (done, total)
        frac = done / total if total else 1.0
        elapsed = time.perf_counter() - self.start
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        line = f"{stage:<9} [{bar}] {done}/{total} {elapsed:6.1f} s {detail}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120) + ("\n" if done >= total else ""))
        else:
            quarter = int(frac * 4)
            if quarter > self.shown:
                self.shown = quarter
                self.stream.write(line + "\n")
        self.stream.flush()


def duration(seconds: float) -> str:
    """Seconds as people read them: '0.04 s', '45 s', '12 min', '2.5 h'."""
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def silent(stage, done, total, detail=""):
    """A progress callback that shows nothing."""


def counter(progress, stage: str, total: int, detail: str):
    """A callback adding up samples for `progress`, which it calls once at 0 right away."""
    seen = [0]

    def add(k):
        seen[0] += k
        progress(stage, seen[0], total, detail)

    add(0)
    return add
