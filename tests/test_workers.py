"""Layers solved in worker processes here (schedule.py): the output is byte-identical to a
single-process run with one BLAS thread, a database build stores the same entries, and the
default starts workers only where the predicted solves repay their start."""

import os
import pathlib
import subprocess
import sys

from test_budget import snapshot

from onnxobc.options import Options
from onnxobc.prepare import load
from onnxobc.schedule import local_workers

DIGITS = pathlib.Path(__file__).parents[1] / "models" / "digits"
MODEL, CALIB = str(DIGITS / "mlp.onnx"), str(DIGITS / "calib.npz")
ONE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(*args, one_thread=False):
    env = dict(os.environ, **ONE) if one_thread else None
    r = subprocess.run([sys.executable, "-m", "onnxobc", *map(str, args)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r


def test_workers_write_what_one_process_on_one_thread_writes(tmp_path):
    common = ["--calib", CALIB, "--wbits", "3", "--sparsity", "0.5", "--max-time", "none"]
    run("compress", MODEL, tmp_path / "one.onnx", *common, "--workers", "1", one_thread=True)
    run("compress", MODEL, tmp_path / "two.onnx", *common, "--workers", "2")
    assert (tmp_path / "one.onnx").read_bytes() == (tmp_path / "two.onnx").read_bytes()
    build = ["db", "build", MODEL, "--calib", CALIB, "--levels", "w4", "s0.500", "2:4", "--db"]
    run(*build, tmp_path / "db1", "--workers", "1", one_thread=True)
    run(*build, tmp_path / "db2", "--workers", "2")
    assert snapshot(tmp_path / "db1") == snapshot(tmp_path / "db2")


def test_workers_start_where_they_repay(monkeypatch):
    prep = load(MODEL, CALIB, Options())
    jobs = [(layer, [Options(wbits=4)]) for layer in prep.layers]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert local_workers(jobs, Options()) == 1  # the digits model's solves take well under a second
    assert local_workers(jobs, Options(workers=2)) == 2  # asked for
    assert local_workers(jobs[:1], Options(workers=2)) == 1  # one layer: nothing to share
    assert local_workers(jobs, Options(workers=8)) == 3  # no more than the layers
    big = [(layer, [Options(wbits=4)] * 1000) for layer in prep.layers]  # as if each took a thousand solves
    from onnxobc.solver import cost

    monkeypatch.setattr(cost, "seconds_per_work", lambda device: 1e-3)
    assert local_workers(big, Options()) == 3
