"""Compress a model with one setting for every layer: the flow of DESIGN.md in readable steps.

    prepare (load, fold, discover, capture)  →  [remove channels, prepare the smaller model]
    →  solve each layer (here or on a Ray cluster; or wave after wave on the compressed model's
       inputs: sequential.py)  →  each one's error at the model's outputs
    →  write each family's form
    →  verify against the input model, save, report

A budget (--speedup, --size, …) instead chooses a level per layer: budget.py."""

from __future__ import annotations

import dataclasses
import time

from . import families
from .channels import remove_channels
from .deadline import allot, mark
from .export import write
from .fidelity import output_errors
from .options import Options
from .prepare import prepare
from .progress import duration, silent
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
    prep = prepare(src, calib, options, progress, hessians=options.channels is not None or not options.sequential,
                   range_choices=True)
    rows = []
    if options.channels is not None:
        model, rows, notes = remove_channels(prep, options.channels, options.damp, options.bias_correction, progress)
        options = dataclasses.replace(options, **families.per_layer(options))
        if not families.compresses(options):
            prep = dataclasses.replace(prep, notes=prep.notes + notes)
            return finish(prep, model, dst, rows, options, t0)
        prep = prepare(src, calib, options, progress, model=model, hessians=not options.sequential, range_choices=True)
        prep.notes += notes
    allotment = allot(prep.layers, options)
    if allotment.fast:
        exact, total = len(prep.layers) - len(allotment.fast), sum(allotment.exact_seconds.values())
        progress("solve", 0, len(prep.layers), f"the time budget affords exact solves for {exact} of "
                 f"{len(prep.layers)} layers (all exact: {duration(total)} predicted)")
    solved = {}
    progress("solve", 0, len(prep.layers), "")
    if options.sequential:
        solved = solve_sequentially(prep, allotment.settings, options, progress)
    else:
        jobs = [(layer, [allotment.settings[layer.weight]]) for layer in prep.layers]
        for layer, (s,), status in solve_all(prep, jobs, options):
            solved[layer.weight] = s
            progress("solve", len(solved), len(prep.layers), layer.weight + status)
    solved = {l.weight: solved[l.weight] for l in prep.layers}  # in the model's order, as a cluster finishes in any
    for weight, error in output_errors(prep, solved, options, progress).items():
        solved[weight].row["output_error"] = error
    for weight in allotment.fast:
        mark(solved[weight].row, allotment, weight)
    out_model, extra = written(prep, solved, options, progress)
    if prep.smoothing:
        extra["smoothing"] = prep.smoothing
    if options.max_time is not None:
        extra["time_budget"] = allotment.report()
    return finish(prep, out_model, dst, rows + [s.row for s in solved.values()], options, t0, extra)


def written(prep, solved: dict, options: Options, progress) -> tuple:
    """(the compressed model, report entries): with two choices of activation ranges, the model
    written with each, and the one of lower output error on the held-out samples kept; with int8
    activations, the layers whose int8 form is slower than float kept float where the whole
    model measures faster so (slow_int8.py)."""
    settings = {l.weight: options for l in prep.layers}
    extra = {}
    if not prep.range_choices:
        model = write(prep, solved, settings)
    else:
        progress("ranges", 0, 1, "the model written with each choice of activation ranges, held-out errors")
        models = {name: write(dataclasses.replace(prep, ranges=r), solved, settings)
                  for name, r in prep.range_choices.items()}
        best, errors = least_error(prep.src, models, prep.held, options.batch_size, options.custom_ops)
        progress("ranges", 1, 1, f"by {best}")
        prep.notes.append(f"int8 activation ranges by {best}: held-out output error " +
                          ", ".join(f"{e:.4g} by {name}" for name, e in errors.items()))
        model, prep = models[best], dataclasses.replace(prep, ranges=prep.range_choices[best])
        extra["activation_ranges"] = {"chosen": best, "held_out_error": errors}
    if options.abits is not None and options.slow_int8 == "float":
        model, entry = keep_float_where_slower(prep, solved, settings, model, options, progress)
        if entry:
            extra["slower_in_int8"] = entry
    return model, extra
