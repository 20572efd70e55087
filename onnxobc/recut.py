"""Channel cuts made wave after wave (sequential.py's idea carried to structured removal): in the
graph's order, each layer is refitted to the inputs X̃ it receives from the model cut so far, its
outputs brought closest to the dense model's (argmin ‖W'(X̃ − μ̃) − W(X − μ)‖², the bias taking the
mean: Wμ − W'μ̃), and the consumers of a group that is cut are solved from that refitted weight
on the centred Hessian of X̃, so that errors that compound through the model are compensated
where they arise instead of unseen. How many channels each group keeps stays as given (the plan's
time was measured on those shapes); which go, the greedy decides again on the new inputs. One
pass of the dense and the cut model over the calibration samples per wave."""

from __future__ import annotations

import math

import numpy as np

from . import solver
from .channels import Removal, apply_cuts, channel_rows, plan_cuts
from .graph.layers import weight_array
from .graph.slicing import set_weight
from .protos import copy
from .sequential import paired_waves
from .solve import dead_inputs
from .verify import least_error


def cut_sequentially(prep, cuts: list, options, progress=None, keep_going=None) -> tuple | None:
    """(model, rows kept, the cuts made): the groups of `cuts` cut to the same widths, every
    layer refitted in the graph's order and each group's consumers solved on the inputs of the
    model cut so far. Layers with one weight grid per channel (depthwise) are left as they are.
    `keep_going(a function that gives the model cut so far, the cuts made so far)` after each
    wave that cuts a group: where it says no, None."""
    progress = progress or (lambda *a: None)
    layers = {l.weight: l for l in prep.layers}
    group_of = {c.weight: cut for cut in cuts for c in cut.group.consumers}
    model, shifts, made, done = copy(prep.model), {}, [], set()

    def chosen(wave):
        readers = [layers[c.weight] for l in wave if l.weight in group_of for c in group_of[l.weight].group.consumers]
        plain = [l for l in wave if l.weight not in group_of and l.groups == 1]
        return [l for l in {l.weight: l for l in readers + plain}.values() if l.weight not in done
                and l.weight in prep.hessians and not dead_inputs(prep.hessians[l.weight])]

    def announce(i, count, todo):
        progress("recut", i, count, f"wave {i + 1} of {count}: {len(todo)} layers on the cut model's inputs")

    def current():
        return apply_cuts(model, prep.layers, made, options.bias_correction, shifts)[0]

    for todo, hessians, cross in paired_waves(prep, options, chosen, current, announce):
        fitted = {}
        for l in todo:
            (W,) = l.matrices(weight_array(prep.model, l.weight))
            acc, C, mean = hessians[l.weight][0], cross[l.weight][0].cross, prep.hessians[l.weight][0].mean
            if options.bias_correction:
                Wf, shift = solver.refit_with_bias(W, acc.hessian, acc.mean, C, mean, options.damp)
            else:
                Wf, shift = solver.refit(W, acc.hessian, C, options.damp), None
            fitted[l.weight] = (Wf, acc)
            done.add(l.weight)
            if l.weight not in group_of:
                set_weight(model, l.weight, l.weight_from([Wf.astype(np.float32)]))
                if shift is not None:
                    shifts[l.weight] = shift
        before = len(made)
        for cut in {id(group_of[w]): group_of[w] for w in fitted if w in group_of}.values():
            count = cut.group.channels - len(cut.keep)
            made.append(Removal(prep, cut.group, count, options.damp, options.bias_correction, fitted).cut(count))
        if keep_going is not None and len(made) > before and not keep_going(current, made):
            return None
    progress("recut", 1, 1, "")
    out, rows_kept = apply_cuts(model, prep.layers, made, options.bias_correction, shifts)
    return out, rows_kept, made


CHECKPOINTS = (0.25, 0.5)  # auto: shares of the groups made again at which the model so far is compared with
# those groups cut independently; behind at each, the cut made again is given up there (on all-MiniLM-L6-v2 it was
# behind from the second of 12 groups to the last; on PP-OCR cls it fell behind and came back, wave after wave)


class Checkpoints:
    """cut_sequentially's `keep_going` for auto: at CHECKPOINTS of the groups (from the second
    one, before the last), the held-out output error of the model made again so far against the
    model with the same groups cut independently. Says no where it was behind (a larger error) at
    every checkpoint; once level or ahead at one, yes without comparing again."""

    def __init__(self, prep, cuts: list, options):
        self.prep, self.cuts, self.options = prep, cuts, options
        n = len(cuts)
        self.marks = sorted({m for f in CHECKPOINTS if (m := max(2, math.ceil(f * n))) < n})
        self.compared = []  # (groups made, {"independent": error, "sequential": error})
        self.ahead, self.checked = False, 0

    def __call__(self, partial, made_so_far: list) -> bool:
        due = sum(m <= len(made_so_far) for m in self.marks)
        if self.ahead or due == self.checked:
            return True
        self.checked = due
        producers = {c.group.producer for c in made_so_far}
        same = [c for c in self.cuts if c.group.producer in producers]
        independent = apply_cuts(self.prep.model, self.prep.layers, same, self.options.bias_correction)[0]
        _, errors = least_error(self.prep.src, {"independent": independent, "sequential": partial()}, self.prep.held,
                                self.options.batch_size, self.options.custom_ops)
        self.compared.append((len(made_so_far), errors))
        self.ahead = errors["sequential"] <= errors["independent"]
        return self.ahead or due < len(self.marks)

    def note(self) -> str:
        return ", ".join(f"{e['sequential']:.4g} made again against {e['independent']:.4g} independently at {k} "
                         f"of {len(self.cuts)} groups cut" for k, e in self.compared)


def made(prep, cuts: list, options, progress=None) -> tuple:
    """(model, rows kept, the cuts made, note or None): `cuts` made as solved on the dense model's
    inputs (options.sequential "off"), made again wave after wave ("on"), or both, the model of
    lower held-out output error kept ("auto"; the cut made again is given up where it is behind
    at every one of the Checkpoints)."""
    progress = progress or (lambda *a: None)
    model, rows_kept = apply_cuts(prep.model, prep.layers, cuts, options.bias_correction)
    if options.sequential in ("off", False) or not cuts:
        return model, rows_kept, cuts, None
    if options.sequential in ("on", True):
        return (*cut_sequentially(prep, cuts, options, progress), None)
    watch = Checkpoints(prep, cuts, options)
    again = cut_sequentially(prep, cuts, options, progress, watch)
    if again is None:
        progress("recut", 1, 1, "given up: behind the independent cut at every checkpoint")
        return model, rows_kept, cuts, ("channels cut independently (sequential auto): held-out output error "
                                        f"{watch.note()}; the cut made again given up there")
    best, errors = least_error(prep.src, {"independent": model, "sequential": again[0]}, prep.held,
                               options.batch_size, options.custom_ops)
    note = (f"channels cut {best}ly (sequential auto): held-out output error "
            + ", ".join(f"{e:.4g} {m}" for m, e in errors.items()))
    return (*(again if best == "sequential" else (model, rows_kept, cuts)), note)


def remove_channels(prep, share: float, options, progress=None) -> tuple:
    """(smaller model, summary rows, notes): channels.plan_cuts at `share`, made as `made` makes them."""
    cuts, notes = plan_cuts(prep, share, options.damp, options.bias_correction, progress)
    model, rows_kept, cuts, note = made(prep, cuts, options, progress)
    return model, channel_rows(prep, cuts, rows_kept), notes + ([note] if note else [])
