"""The database on disk: an SQLite index (standard library) plus one .npz of arrays per entry.

    DIR/index.sqlite      entries(model, settings, layer, level, file, meta JSON)
                          latency(runtime, signature, level, seconds)
    DIR/tensors/*.npz     the arrays of each (layer, level) result

Entries are keyed by the model's fingerprint, the solver settings' fingerprint (method,
dampening, calibration data…), the layer and the level. Every write is atomic: the arrays go to
a temporary file that is fsynced and renamed, and only then is the index row committed, so a
kill at any point leaves either a finished entry or none (at most an orphan file, overwritten
when the entry is computed again).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sqlite3

import numpy as np

from ..atomic import atomic_path
from ..faults import point

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    model TEXT NOT NULL, settings TEXT NOT NULL, layer TEXT NOT NULL, level TEXT NOT NULL,
    file TEXT NOT NULL, meta TEXT NOT NULL, PRIMARY KEY (model, settings, layer, level));
CREATE TABLE IF NOT EXISTS latency (
    runtime TEXT NOT NULL, signature TEXT NOT NULL, level TEXT NOT NULL, seconds REAL NOT NULL,
    PRIMARY KEY (runtime, signature, level));
"""


def fingerprint(*parts) -> str:
    """A short stable hash of bytes, arrays, or JSON-able values."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


class Database:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        try:
            (self.root / "tensors").mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.root / "index.sqlite", timeout=60)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ValueError(f"{self.root}: cannot open the database there ({e})") from None

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, model: str, settings: str, layer: str, level: str) -> bool:
        row = self.conn.execute("SELECT file FROM entries WHERE model=? AND settings=? AND layer=? AND level=?",
                                (model, settings, layer, level)).fetchone()
        return row is not None and (self.root / "tensors" / row[0]).is_file()

    def put(self, model: str, settings: str, layer: str, level: str, arrays: dict, meta: dict) -> None:
        name = fingerprint(model, settings, layer, level) + ".npz"
        _write_npz(self.root / "tensors" / name, arrays)
        point()
        self._commit("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                     (model, settings, layer, level, name, json.dumps(meta, sort_keys=True)))

    def _commit(self, statement: str, values: tuple) -> None:
        try:
            with self.conn:
                self.conn.execute(statement, values)
        except sqlite3.Error as e:  # a full disk, a read-only folder
            raise ValueError(f"{self.root}: the database could not be written ({e}); what it held stays") from None

    def meta(self, model: str, settings: str, layer: str, level: str) -> dict | None:
        """The meta of an entry (without its arrays), or None."""
        row = self.conn.execute("SELECT meta FROM entries WHERE model=? AND settings=? AND layer=? AND level=?",
                                (model, settings, layer, level)).fetchone()
        return None if row is None else json.loads(row[0])

    def get(self, model: str, settings: str, layer: str, level: str):
        """(arrays, meta) of an entry; KeyError when there is none."""
        row = self.conn.execute("SELECT file, meta FROM entries WHERE model=? AND settings=? AND layer=? AND level=?",
                                (model, settings, layer, level)).fetchone()
        if row is None:
            raise KeyError((layer, level))
        with np.load(self.root / "tensors" / row[0], allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        return arrays, json.loads(row[1])

    def entries(self, model: str | None = None) -> list[dict]:
        q = "SELECT model, settings, layer, level, meta FROM entries"
        rows = self.conn.execute(q + (" WHERE model=?" if model else "") + " ORDER BY model, settings, layer, level",
                                 (model,) if model else ()).fetchall()
        return [{"model": m, "settings": s, "layer": l, "level": v, **json.loads(meta)} for m, s, l, v, meta in rows]

    def latency(self, runtime: str, signature: str, level: str) -> float | None:
        row = self.conn.execute("SELECT seconds FROM latency WHERE runtime=? AND signature=? AND level=?",
                                (runtime, signature, level)).fetchone()
        return None if row is None else row[0]

    def put_latency(self, runtime: str, signature: str, level: str, seconds: float) -> None:
        self._commit("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)", (runtime, signature, level, seconds))


def _write_npz(path: pathlib.Path, arrays: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
