"""Solving layers on a Ray cluster (--ray): one task per layer, its weight and Hessians through
the object store, the results back to the one process that writes them (so the database stays
consistent). A task whose worker dies is retried (up to 3 times); one that fails for good is
reported after the others have finished and been written, so a rerun resumes. Tasks ask for a
GPU where the cluster has one (unless --device cpu), and solve there with CuPy when the worker
can use it."""

from __future__ import annotations

import os
import pathlib

from .errors import OptionError
from .solve import solve_settings

RETRIES = 3
# a task's BLAS runs one thread, on the one CPU it asks for: OpenBLAS rounds differently with
# other thread counts, so the results equal a local build's made with OMP_NUM_THREADS=1
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def connect(address: str):
    """The ray module, connected: "auto" (the cluster `ray start` made on this machine, or
    RAY_ADDRESS), "local" (a new Ray instance on this machine's cores), or an address
    (HOST:PORT, ray://HOST:10001). An OptionError says what is missing."""
    _token_auth(address)  # before Ray reads its configuration, at import
    try:
        import ray
    except ImportError:
        raise OptionError("{ray} needs Ray: pip install 'onnxobc[distributed]'") from None
    if not ray.is_initialized():
        _reachable(address)
        try:
            ray.init(address=None if address == "local" else address, logging_level="ERROR",
                     include_dashboard=False, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise _no_cluster(address, " ".join(str(e).split())[:300]) from None
    return ray


def _no_cluster(address: str, why: str) -> OptionError:
    why = why.replace("{", "(").replace("}", ")")
    return OptionError(f"{{ray}} {address}: no Ray cluster to connect to ({why}); start one with `ray start --head`, "
                      "or use {ray} local")


def _token_auth(address: str) -> None:
    """Use Ray's token authentication when a token is there, as `ray start --head` does: Ray's
    driver (2.60) sends none to an address unless RAY_AUTH_MODE=token, and such a cluster refuses it."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
        (pathlib.Path.home() / ".ray" / "auth_token").is_file()
    if address != "local" and token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


def _reachable(address: str) -> None:
    """A HOST:PORT that nothing answers on is an error in seconds (Ray itself waits a minute or more)."""
    import socket

    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise _no_cluster(address, e.strerror or str(e)) from None


def solve_on_cluster(jobs: list, address: str, device: str = "auto"):
    """For each (Problem, settings) of `jobs`, solve_settings on the cluster; yields (index,
    [Solved per setting], status) as tasks finish, status saying how many are done, queued or
    running, and failed. Tasks take a GPU each where the cluster has GPUs, unless `device` is "cpu"."""
    ray = connect(address)
    gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if device == "cuda" and not gpu:
        raise OptionError(f"{{device}} cuda: the Ray cluster at {address} has no GPU")
    gpu = gpu and device != "cpu"
    task = ray.remote(solve_settings).options(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=RETRIES,
                                     retry_exceptions=False, runtime_env={"env_vars": ONE_THREAD})
    refs = {}
    for i, (problem, settings) in enumerate(jobs):
        refs[task.remote(ray.put(problem), settings)] = i
    pending, done, failed = list(refs), 0, []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        i = refs[ready[0]]
        try:
            solved = ray.get(ready[0])
        except ray.exceptions.RayError as e:
            failed.append(f"{jobs[i][0].layer.weight}: {' '.join(str(e).split())[:300]}")
            continue
        done += 1
        yield i, solved, f" (cluster: {done} done, {len(pending)} queued or running, {len(failed)} failed)"
    if failed:
        raise ValueError(f"{len(failed)} of {len(jobs)} layers failed on the cluster (after {RETRIES} retries where "
                         f"a worker died); the others are done, rerun to retry: " + "; ".join(failed))
