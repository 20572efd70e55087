"""Kill points for the fault tests: with ONNXOBC_KILL_AT=N in the environment, the process kills
itself with SIGKILL at its N-th kill point, where a kill -9 from outside could land: between
writing a file and renaming it, between a database file and its index row, at each progress
step, before each layer solve (also in a cluster's workers). With ONNXOBC_KILL_ONCE=FILE as
well, only the first process to get there dies (it makes FILE). Without them, `point()` does
nothing."""

from __future__ import annotations

import os
import signal

_AT = int(os.environ.get("ONNXOBC_KILL_AT") or 0)
_ONCE = os.environ.get("ONNXOBC_KILL_ONCE")
_passed = 0


def point() -> None:
    global _passed
    if _AT:
        _passed += 1
        if _passed == _AT and _first():
            os.kill(os.getpid(), signal.SIGKILL)


def _first() -> bool:
    if not _ONCE:
        return True
    try:
        os.close(os.open(_ONCE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
