"""Solving many layers: as tasks on the Ray cluster options.ray names (cluster.py), or here, in
worker processes (one per core; each with BLAS, OpenMP and numba on one thread, so a result is
byte-identical to a single-process run with one thread) where the predicted exact work repays
their start, else in this process."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os

from . import families
from .cluster import ONE_THREAD
from .faults import point
from .prepare import problem
from .solve import solve_settings
from .solver import cost
from .solver.backend import array_module

PARALLEL_FROM = 20.0  # predicted seconds of exact work below which this process alone is quicker: a worker
#                       takes about two seconds to start and import


def solve_all(prep, jobs: list, options):
    """Solve each (layer, settings) of `jobs`; yields (layer, [Solved per setting], status) as
    each finishes (in order in this process, in any order on a cluster or in workers)."""
    if options.ray:
        from .cluster import solve_on_cluster

        problems = [(problem(prep, layer), settings) for layer, settings in jobs]
        for i, solved, status in solve_on_cluster(problems, options.ray, options.device):
            yield jobs[i][0], solved, status
        return
    workers = local_workers(jobs, options)
    if workers > 1:
        yield from _in_processes(prep, jobs, workers)
        return
    for layer, settings in jobs:
        yield layer, solve_settings(problem(prep, layer), settings), ""


def local_workers(jobs: list, options) -> int:
    """How many processes solve `jobs` here: options.workers (0: one per usable core, where the
    predicted exact work is PARALLEL_FROM seconds or more); one where the solvers run on a GPU."""
    n = options.workers or len(os.sched_getaffinity(0))
    if n < 2 or len(jobs) < 2 or array_module(options.device).__name__ != "numpy":
        return 1
    if not options.workers:
        work = sum(cost.exact_work(l.rows, l.cols, l.groups, families.exact_passes(s))
                   for l, settings in jobs for s in settings if s is not None)
        if work * cost.seconds_per_work("cpu") < PARALLEL_FROM:
            return 1
    return min(n, len(jobs))


def _in_processes(prep, jobs: list, workers: int):
    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with _environment({**ONE_THREAD, "NUMBA_NUM_THREADS": "1"}, drop=("ONNXOBC_KILL_AT",)):
            # the workers start as the jobs are submitted, with this environment (kill points stay here)
            futures = {pool.submit(solve_settings, problem(prep, layer), settings): i
                       for i, (layer, settings) in enumerate(jobs)}
        for f in cf.as_completed(futures):
            layer, settings = jobs[futures[f]]
            solved = f.result()
            for _ in settings:  # as many kill points as a solve here passes
                point()
            yield layer, solved, ""
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _environment(values: dict, drop=()):
    old = {k: os.environ.get(k) for k in (*values, *drop)}
    os.environ.update(values)
    for k in drop:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
