"""Faults: kill -9 at random kill points of `db build` and `compress` (onnxobc/faults.py), then a
rerun gives the identical database and file without redoing finished work; a full disk
(RLIMIT_FSIZE) while writing ends in a clear error with nothing partial left."""

import random
import resource
import subprocess
import sys

import onnx
from test_budget import CALIB, LEVELS, MODEL, snapshot


def onnxobc(*args, kill_at=None, max_file_bytes=None):
    env = None
    if kill_at is not None:
        import os

        env = dict(os.environ, ONNXOBC_KILL_AT=str(kill_at))

    def limit():
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "onnxobc", *map(str, args)], capture_output=True, text=True, env=env,
                          preexec_fn=limit)


def temporary_files(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_db_build_killed_at_random_points_resumes_without_recomputing(tmp_path):
    build = ["db", "build", MODEL, "--calib", CALIB, "--levels", *LEVELS, "--db"]
    clean = onnxobc(*build, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    expected = snapshot(tmp_path / "clean")
    db = tmp_path / "db"
    rng = random.Random(8)
    kills = 0
    for _ in range(8):  # each run resumes the last one's database and is killed at a random point
        r = onnxobc(*build, db, kill_at=rng.randint(1, 60))
        if r.returncode == 0:
            break
        assert r.returncode == -9, r.stderr
        kills += 1
        stored = snapshot(db) if (db / "index.sqlite").exists() else {}
        assert all(expected[k] == v for k, v in stored.items())  # every finished entry is whole and right
    assert kills >= 5
    print(f"db build: {kills} kills survived")
    r = onnxobc(*build, db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{db}: {len(expected) - len(stored)} (layer, level) results computed, "
                               f"{len(stored)} already there")  # nothing finished was redone
    assert snapshot(db) == expected
    assert temporary_files(db) == []  # the files of killed writes were removed


def test_compress_killed_at_random_points_resumes_to_the_identical_file(tmp_path):
    def compress(out, db, **kw):
        return onnxobc("compress", MODEL, out, "--calib", CALIB, "--size", "0.2", "--db", db, "--levels", *LEVELS,
                       **kw)

    clean = compress(tmp_path / "clean.onnx", tmp_path / "clean.db")
    assert clean.returncode == 0, clean.stderr
    expected = (tmp_path / "clean.onnx").read_bytes()
    out, db = tmp_path / "o.onnx", tmp_path / "db"
    rng = random.Random(9)
    kills = 0
    for _ in range(8):
        r = compress(out, db, kill_at=rng.randint(1, 40))
        if r.returncode == 0:
            break
        assert r.returncode == -9, r.stderr
        kills += 1
        assert not out.exists() or out.read_bytes() == expected  # the whole file or none
    assert kills >= 5
    print(f"compress: {kills} kills survived")
    r = compress(out, db)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == expected
    assert snapshot(db) == snapshot(tmp_path / "clean.db")
    assert temporary_files(tmp_path) == []


def test_full_disk_while_writing_leaves_nothing_partial(tmp_path):
    size = len(open(MODEL, "rb").read())
    out = tmp_path / "o.onnx"
    r = onnxobc("compress", MODEL, out, "--calib", CALIB, "--sparsity", "0.5", max_file_bytes=size // 4)
    assert r.returncode == 2 and "File too large" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and temporary_files(tmp_path) == []
    db = tmp_path / "db"
    build = ["db", "build", MODEL, "--calib", CALIB, "--levels", *LEVELS, "--db", db]
    r = onnxobc(*build, max_file_bytes=40_000)  # some of the first layer's entries do not fit
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("onnxobc: error: "), r.stderr
    assert "Traceback" not in r.stderr
    partial = snapshot(db)
    assert 0 < len(partial) < 3 * len(LEVELS) and temporary_files(db) == []
    r = onnxobc(*build)  # room again: the build resumes
    assert r.returncode == 0, r.stderr
    assert f"{len(partial)} already there" in r.stdout
    r = onnxobc("compress", MODEL, out, "--calib", CALIB, "--sparsity", "0.5")
    assert r.returncode == 0 and onnx.load(out).graph.node
