"""Building on a Ray cluster (--ray): the same database and output as the local build, a worker
killed mid-build survived by Ray's retry, failures reported after the finished work is stored, a
cluster started with `ray start`, and a clear error without Ray. Real local Ray instances.
(Tasks run BLAS on one thread; the digits model's layers are small enough that OpenBLAS runs
one thread here too, so this process's own build is the reference; bench/cluster.py compares
larger layers with a one-thread local build.)"""

import importlib.util
import os
import socket
import subprocess
import sys

import pytest
from test_budget import CALIB, LEVELS, MODEL, snapshot
from test_faults import onnxobc

from onnxobc.cli import main

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install '.[distributed]')")


@pytest.fixture
def ray_instance(request):
    """A local Ray instance with 2 CPUs in this process; `request.param`: its workers' environment."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": getattr(request, "param", {})})
    yield ray
    ray.shutdown()


def build(db, *extra):
    return ["db", "build", MODEL, "--calib", CALIB, "--levels", *LEVELS, "--db", str(db), *extra]


@needs_ray
def test_ray_build_and_compress_match_the_local_ones(tmp_path, ray_instance, capsys):
    assert main(build(tmp_path / "local")) == 0
    assert main(build(tmp_path / "ray", "--ray", "auto")) == 0  # the instance this process started
    err = capsys.readouterr().err
    assert "(cluster: 3 done, 0 queued or running, 0 failed)" in err
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")
    for where, extra in (("local", []), ("ray", ["--ray", "auto"])):
        assert main(["compress", MODEL, str(tmp_path / f"{where}.onnx"), "--calib", CALIB, "--size", "0.2",
                     "--levels", *LEVELS, "--db", str(tmp_path / f"{where}.db"), *extra]) == 0
        assert main(["compress", MODEL, str(tmp_path / f"{where}-w4.onnx"), "--calib", CALIB, "--wbits", "4",
                     "--sequential", "off", *extra]) == 0  # on a cluster the layers are solved independently
    for name in ("", "-w4"):
        assert (tmp_path / f"ray{name}.onnx").read_bytes() == (tmp_path / f"local{name}.onnx").read_bytes()


@needs_ray
@pytest.mark.parametrize("ray_instance", [{"ONNXOBC_KILL_AT": "2", "ONNXOBC_KILL_ONCE": "/tmp/onnxobc-kill-once"}],
                         indirect=True)
def test_a_worker_killed_mid_build_is_survived(tmp_path, ray_instance):
    flag = "/tmp/onnxobc-kill-once"  # the workers' environment names it before tmp_path exists
    if os.path.exists(flag):
        os.unlink(flag)
    try:
        assert main(build(tmp_path / "local")) == 0
        assert main(build(tmp_path / "ray", "--ray", "auto")) == 0
        assert os.path.exists(flag)  # a worker did die at its second solve, and its task was retried
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")


@needs_ray
@pytest.mark.parametrize("ray_instance", [{"ONNXOBC_KILL_AT": "1"}], indirect=True)
def test_tasks_that_fail_for_good_are_reported_and_the_rerun_resumes(tmp_path, ray_instance, capsys):
    assert main(build(tmp_path / "db", "--ray", "auto")) == 2  # every worker dies at its first solve
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("onnxobc: error: 3 of 3 layers failed on the cluster (after 3 retries"), err
    assert main(build(tmp_path / "db")) == 0  # here, without the cluster
    assert len(snapshot(tmp_path / "db")) == 3 * len(LEVELS)


@needs_ray
def test_a_cluster_started_with_ray_start(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                           "--disable-usage-stats"], capture_output=True, text=True)
    assert head.returncode == 0, head.stderr
    try:
        r = onnxobc(*build(tmp_path / "db", "--ray", f"127.0.0.1:{port}"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{tmp_path / 'db'}: {3 * len(LEVELS)} (layer, level) results computed")
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)
    r = onnxobc(*build(tmp_path / "clean"))
    assert snapshot(tmp_path / "db") == snapshot(tmp_path / "clean")


def test_without_ray_the_option_is_a_clear_error(tmp_path):
    script = "import sys; sys.modules['ray'] = None; from onnxobc.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", script, *build(tmp_path / "db", "--ray", "auto")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--ray needs Ray: pip install 'onnxobc[distributed]'" in r.stderr
    assert not (tmp_path / "db").exists()


@needs_ray
def test_no_cluster_at_the_address_is_a_clear_error(tmp_path):
    r = onnxobc(*build(tmp_path / "db", "--ray", "127.0.0.1:9"))
    assert r.returncode == 2 and "no Ray cluster to connect to" in r.stderr and "Traceback" not in r.stderr
