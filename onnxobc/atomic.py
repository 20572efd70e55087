"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it, so a
crash, a kill or a full disk leaves either the old file, the new one, or nothing — never a part.
A temporary file left by a killed process (its name carries the process id) is removed by the
next write of the same target."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

from .faults import point


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(path: pathlib.Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` to write; on success it becomes `path` (an ordinary
    file under the umask, fsynced with its folder), on failure it is removed."""
    path = pathlib.Path(path)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        point()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files
        point()
        os.replace(tmp, path)
        point()
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
