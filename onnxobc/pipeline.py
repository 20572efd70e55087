"""Compress a model with one setting for every layer: the flow of DESIGN.md in readable steps.

    prepare (load, fold, discover, capture)  →  [remove channels, prepare the smaller model]
    →  solve each layer (here or on a Ray cluster; or wave after wave on the compressed model's
       inputs: sequential.py; with sequential "auto", both ways)
    →  write each family's form (with each choice of activation ranges), keep the model of least
       held-out output error  →  each layer's error at the model's outputs
    →  [int8 layers slower than float kept float: slow_int8.py]
    →  verify against the input model, save, report

A budget (--speedup, --size, …) instead chooses a level per layer: budget.py."""

from __future__ import annotations

import dataclasses
import time

from . import families
from .deadline import allot, mark
from .export import write
from .fidelity import output_errors
from .options import Options
from .prepare import activations_quantized, prepare
from .progress import duration, silent
from .recut import remove_channels
from .schedule import solve_all
from .sequential import solve_sequentially
from .slow_int8 import keep_float_where_slower
from .verify import check_paths, finish, least_error

__all__ = ["Options", "compress"]


def compress(model_path, out_path, calib, options: Options, progress=None) -> dict:
    """Compress `model_path` into `out_path`, every layer with `options`; returns the report (also
    what --report writes). `calib`: an .npz, a folder of them, a CalibrationDataReader or
    "random". `progress(stage, done, total, detail)`, if given, is called as capture and solve
    advance."""
    progress = progress or silent
    options.check()
    src, dst = check_paths(model_path, out_path)
    t0 = time.perf_counter()
    modes = options.solve_modes
    prep = prepare(src, calib, options, progress, hessians=options.channels is not None or "independent" in modes,
                   range_choices=True)
    rows = []
    if options.channels is not None:
        model, rows, notes = remove_channels(prep, options.channels, options, progress)
        options = dataclasses.replace(options, **families.per_layer(options))
        if not families.compresses(options):
            prep = dataclasses.replace(prep, notes=prep.notes + notes)
            return finish(prep, model, dst, rows, options, t0)
        prep = prepare(src, calib, options, progress, model=model, hessians="independent" in modes, range_choices=True)
        prep.notes += notes
    fit = options.target.int8_weight_bits()
    if (options.wbits or 0) > fit and any(activations_quantized(l, options) for l in prep.layers):
        prep.notes.append(f"{options.wbits}-bit weights with int8 activations: {options.target.label}'s int8 kernels "
                          f"on this CPU saturate above {fit}-bit weights, which costs accuracy that no solver sees; "
                          f"{fit}-bit weights avoid it")
    allotment = allot(prep.layers, options)
    if allotment.fast:
        exact, total = len(prep.layers) - len(allotment.fast), sum(allotment.exact_seconds.values())
        progress("solve", 0, len(prep.layers), f"the time budget affords exact solves for {exact} of "
                 f"{len(prep.layers)} layers (all exact: {duration(total)} predicted)")
        if len(modes) > 1:
            modes = ("independent",)
            prep.notes.append("sequential auto: solved independently only, the time budget affording not every "
                              "exact solve even once")
    candidates = {}
    for mode in modes:
        progress("solve", 0, len(prep.layers), f"{mode} solves" if len(modes) > 1 else "")
        candidates[mode] = _solved(prep, allotment, options, mode, progress)
    out_model, prep, solved, extra = _written_best(prep, candidates, options, progress)
    for weight, error in output_errors(prep, solved, options, progress).items():
        solved[weight].row["output_error"] = error
    for weight in allotment.fast:
        mark(solved[weight].row, allotment, weight)
    if options.abits is not None and options.slow_int8 == "float":
        out_model, entry = keep_float_where_slower(prep, solved, {l.weight: options for l in prep.layers},
                                                   out_model, options, progress)
        if entry:
            extra["slower_in_int8"] = entry
    if prep.smoothing:
        extra["smoothing"] = prep.smoothing
    if options.max_time is not None:
        extra["time_budget"] = allotment.report()
    return finish(prep, out_model, dst, rows + [s.row for s in solved.values()], options, t0, extra)


def _solved(prep, allotment, options: Options, mode: str, progress) -> dict:
    """weight → Solved for every layer, in the model's order, solved `mode`ly."""
    if mode == "sequential":
        solved = solve_sequentially(prep, allotment.settings, options, progress)
    else:
        solved = {}
        jobs = [(layer, [allotment.settings[layer.weight]]) for layer in prep.layers]
        for layer, (s,), status in solve_all(prep, jobs, options):
            solved[layer.weight] = s
            progress("solve", len(solved), len(prep.layers), layer.weight + status)
    return {l.weight: solved[l.weight] for l in prep.layers}  # in the model's order, as a cluster finishes in any


def _written_best(prep, candidates: dict, options: Options, progress) -> tuple:
    """(model, prep, solved, report entries) of the candidate (mode → solved) whose model, written
    with its best activation ranges, has the lower output error on the held-out samples."""
    written = {mode: _written(prep, solved, options, progress) for mode, solved in candidates.items()}
    if len(written) == 1:
        ((mode, (model, prep, extra)),) = written.items()
        return model, prep, candidates[mode], extra
    best, errors = least_error(prep.src, {m: w[0] for m, w in written.items()}, prep.held, options.batch_size,
                               options.custom_ops)
    model, prep, extra = written[best]
    prep.notes.append(f"solved {best}ly (sequential auto): held-out output error " +
                      ", ".join(f"{e:.4g} {m}" for m, e in errors.items()))
    return model, prep, candidates[best], {**extra, "solve_mode": {"chosen": best, "held_out_error": errors}}


def _written(prep, solved: dict, options: Options, progress) -> tuple:
    """(the compressed model, its prep, report entries): with two choices of activation ranges, the
    model written with each, and the one of lower output error on the held-out samples kept."""
    settings = {l.weight: options for l in prep.layers}
    if not prep.range_choices:
        return write(prep, solved, settings), prep, {}
    progress("ranges", 0, 1, "the model written with each choice of activation ranges, held-out errors")
    models = {name: write(dataclasses.replace(prep, ranges=r), solved, settings)
              for name, r in prep.range_choices.items()}
    best, errors = least_error(prep.src, models, prep.held, options.batch_size, options.custom_ops)
    progress("ranges", 1, 1, f"by {best}")
    prep = dataclasses.replace(prep, ranges=prep.range_choices[best], notes=list(prep.notes))
    prep.notes.append(f"int8 activation ranges by {best}: held-out output error " +
                      ", ".join(f"{e:.4g} by {name}" for name, e in errors.items()))
    return models[best], prep, {"activation_ranges": {"chosen": best, "held_out_error": errors}}
