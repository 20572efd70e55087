"""Kill points for the fault tests: with ONNXOBC_KILL_AT=N in the environment, the process kills
itself with SIGKILL at its N-th kill point, where a kill -9 from outside could land: between
writing a file and renaming it, between a database file and its index row, at each progress
step. Without it, `point()` does nothing."""

from __future__ import annotations

import os
import signal

_AT = int(os.environ.get("ONNXOBC_KILL_AT") or 0)
_passed = 0


def point() -> None:
    global _passed
    if _AT:
        _passed += 1
        if _passed == _AT:
            os.kill(os.getpid(), signal.SIGKILL)
