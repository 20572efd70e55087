"""Solving many layers: one after another here, or as tasks on the Ray cluster options.ray names
(cluster.py)."""

from __future__ import annotations

from .prepare import problem
from .solve import solve_settings


def solve_all(prep, jobs: list, options):
    """Solve each (layer, settings) of `jobs`; yields (layer, [Solved per setting], cluster
    status) as each finishes (in order here, in any order on a cluster)."""
    if options.ray:
        from .cluster import solve_on_cluster

        problems = [(problem(prep, layer), settings) for layer, settings in jobs]
        for i, solved, status in solve_on_cluster(problems, options.ray, options.device):
            yield jobs[i][0], solved, status
        return
    for layer, settings in jobs:
        yield layer, solve_settings(problem(prep, layer), settings), ""
