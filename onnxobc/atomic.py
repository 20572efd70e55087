"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it, so a
crash, a kill or a full disk leaves either the old file, the new one, or nothing — never a part."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` to write; on success it becomes `path` (an ordinary
    file under the umask, fsynced with its folder), on failure it is removed."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes private files
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
