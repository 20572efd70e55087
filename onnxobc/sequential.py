"""Sequential mode (the OBC paper's appendix A.8): the layers are solved wave after wave in the
graph's order (graph/order.py), each on the inputs X̃ it receives from the model with every
earlier wave already compressed (and written in its export form, int8 activations included), so
that errors are compensated where they compound instead of unseen. Before the solve, the dense
weight is refitted to those inputs, W' = argmin ‖W'X̃ − WX‖² (solver.refit, from X̃X̃ᵀ and the
cross term X̃Xᵀ with the dense model's inputs X, both streamed batch by batch), so the exact
solvers start from a point of zero gradient; then solved with H̃ = 2X̃X̃ᵀ. Each wave costs one
pass of the dense and the partly compressed model over the calibration samples."""

from __future__ import annotations

import numpy as np

from . import solver
from .calib.capture import capture_paired
from .export import write
from .graph.bias import feeds_batch_norm
from .graph.layers import weight_array
from .graph.order import waves
from .solve import Problem, dead_inputs, solve_settings


def paired_waves(prep, options, chosen, current, announce):
    """Wave after wave of `prep`'s layers in the graph's order: (those `chosen(wave)` picks, their
    Hessians and cross terms on the inputs the model `current()` gives them at that moment, paired
    with the dense model's); `announce(wave number, waves, layers)` before each capture. Waves
    where nothing is chosen are passed without a capture."""
    order = waves(prep.model, prep.layers)
    for i, wave in enumerate(order):
        layers = chosen(wave)
        if not layers:
            continue
        announce(i, len(order), layers)
        hessians, cross = capture_paired(prep.model, current(), layers, prep.calib, options.batch_size,
                                         options.custom_ops, device=options.device)
        yield layers, hessians, cross


def solve_sequentially(prep, settings: dict, options, progress) -> dict:
    """weight → Solved for every layer of `prep` at `settings[weight]`, wave after wave."""
    solved = {}

    def current():
        copies = {w: s.with_own_row() for w, s in solved.items()}  # write() fills rows: the final write's are reported
        return write(prep, copies, {w: settings[w] for w in solved}) if solved else prep.model

    def announce(i, count, wave):
        progress("solve", len(solved), len(prep.layers), f"wave {i + 1} of {count}: the inputs of "
                 f"{len(wave)} layers through the model compressed so far")

    for wave, hessians, cross in paired_waves(prep, options, list, current, announce):
        for layer in wave:
            W = weight_array(prep.model, layer.weight)
            H, C = hessians[layer.weight], cross[layer.weight]
            if not dead_inputs(H):
                W = layer.weight_from([solver.refit(M, acc.hessian, c.cross, options.damp).astype(np.float32)
                                       for M, acc, c in zip(layer.matrices(W), H, C)]).astype(W.dtype)
            (s,) = solve_settings(Problem(layer, W, H, feeds_batch_norm(prep.model, layer)), [settings[layer.weight]])
            s.row["note"] = "; ".join(n for n in (s.row["note"], "sequential: refitted to the compressed inputs") if n)
            solved[layer.weight] = s
            progress("solve", len(solved), len(prep.layers), layer.weight)
    return solved
