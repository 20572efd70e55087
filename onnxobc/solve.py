"""Solving one layer: a Problem (its weight, Hessians and view, no ONNX) at one or many settings,
each family's part fitted through the pure solvers and composed by role (families/base.py):

    addends present (outliers, a low-rank part)  →  solver.additive over them and the quantized
                                                    (or sparse) part, in turns
    a family that stands alone (low-rank, codebooks)  →  its own solve
    otherwise                                    →  prune (if asked), then quantize the survivors

then variance correction where a BatchNormalization reads the layer, and the bias shift
(W − Ŵ)·E[x]. One greedy pass gives every unstructured (and every 4-block) sparsity of a set of
settings. A Problem travels as it is to a cluster's workers."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import families, solver
from .faults import point
from .families import Fit


@dataclasses.dataclass
class Problem:
    """What solving one layer takes, and no ONNX."""

    layer: object  # graph.layers.Layer
    weight: np.ndarray  # in the ONNX layout
    hessians: list  # HessianAccumulator per group
    normalized: bool  # a BatchNormalization reads the layer's output (variance correction)


@dataclasses.dataclass
class Solved:
    """One layer compressed at one setting."""

    weight: np.ndarray  # Ŵ in the ONNX weight's layout
    row: dict  # the summary row
    shift: np.ndarray | None  # output mean shift to fold into the bias
    parts: dict = dataclasses.field(default_factory=dict)  # family key → its part per group

    def with_own_row(self) -> Solved:
        """The same result with a copy of its row: for a write() (which fills rows in) whose rows
        are not the ones reported."""
        return dataclasses.replace(self, row=dict(self.row))


def solve_settings(p: Problem, settings: list) -> list:
    """`p` solved at each of `settings` (Options, or None for the dense weight); one greedy pass
    gives every unstructured (and every 4-block) sparsity among them."""
    passes = shared_passes(p, settings)
    out = []
    for i, opt in enumerate(settings):
        point()
        out.append(dense(p) if opt is None else solve_layer(p, opt, passes.get(i)))
    return out


def dense(p: Problem) -> Solved:
    return Solved(p.weight, summary_row(p.layer, p.weight, note="dense"), None)


def dead_inputs(hessians) -> bool:
    """Whether some group's inputs are all zero on the calibration data (a Hessian of zeros)."""
    return any(not acc.diagonal.any() for acc in hessians)


def shared_passes(p: Problem, settings: list) -> dict:
    """setting index → per-group pruning Results, from one greedy pass per family that gives many
    levels at once (unstructured, 4-blocks), where two settings or more share it."""
    out = {}
    for fam in families.FAMILIES:
        members = [i for i, opt in enumerate(settings) if opt is not None and fam.present(opt)]
        if (not getattr(fam, "one_pass", False) or len(members) < 2 or fam.unfit(p.layer, settings[members[0]])
                or dead_inputs(p.hessians)):
            continue
        first = settings[members[0]]
        values = sorted({getattr(settings[i], fam.key) for i in members})
        per_group = [fam.prune_levels(*solver.prepare(M, acc.hessian, first.damp), values, first)
                     for M, acc in zip(p.layer.matrices(p.weight), p.hessians)]
        results = {v: [g[k] for g in per_group] for k, v in enumerate(values)}
        out.update({i: results[getattr(settings[i], fam.key)] for i in members})
    return out


def solve_group(W, H, opt, pruned=None, grid=None) -> Fit:
    """One group's matrix at `opt`. `pruned`, a pruning Result computed already (one level of a
    many-level pass), replaces the pruning step; `grid`, the quantization grid (per-tensor
    weights), replaces its fitting."""
    used = families.present(opt)
    addends = [f for f in used if f.role == "addend"]
    if addends:
        base = families.of_role(opt, "quantize") or families.of_role(opt, "prune")
        with_base = addends + [base]
        r = solver.additive(W, H, [f.addend(W, opt) for f in with_base])
        return Fit(r.weight, r.loss, {f.key: f.take(part) for f, part in zip(with_base, r.parts)})
    alone = families.of_role(opt, "alone")
    if alone is not None:
        return alone.solve(W, H, opt)
    prune, quantize = families.of_role(opt, "prune"), families.of_role(opt, "quantize")
    fit = Fit(W, 0.0)
    if prune is not None:
        pruned = pruned if pruned is not None else prune.prune(W, H, opt)
        fit = Fit(pruned.weight, pruned.loss)
    if quantize is not None:
        r, grid = quantize.quantize(W, H, opt, pruned, grid)
        fit = Fit(r.weight, r.loss, {quantize.key: grid})
    return fit


def scaled(fit: Fit, ratio) -> Fit:
    """`fit` with every output channel multiplied by `ratio`: the same codes on rescaled grids."""
    return Fit(families.base.rows_scaled(fit.weight, ratio), fit.loss,
               {k: families.BY_KEY[k].scaled(part, ratio) for k, part in fit.parts.items()})


def stored_parts(fits: list) -> dict:
    """family key → its part per group, as stored (a quantized part as codes: Ŵ less the addends,
    on its grid)."""
    used = [f for f in families.FAMILIES if f.key in fits[0].parts]
    rests = []
    for fit in fits:
        rest = np.asarray(fit.weight, np.float64)
        for f in used:
            if f.role == "addend":
                rest = rest - f.contribution(fit.parts[f.key])
        rests.append(rest)
    return {f.key: [f.finish(fit.parts[f.key], rest) for fit, rest in zip(fits, rests)] for f in used}


def solve_layer(p: Problem, options, pruned=None) -> Solved:
    """Solve every group of one layer at `options`; where a BatchNormalization reads its output,
    rescale each output channel to the dense channel's variance."""
    layer, w, hessians = p.layer, p.weight, p.hessians
    if not np.isfinite(w).all():
        raise ValueError(f"weight {layer.weight!r} contains NaN or Inf")
    opt, note = options, ""
    for fam in families.present(options):
        reason = fam.unfit(layer, options)
        if reason:
            opt, note = dataclasses.replace(opt, **fam.without(opt)), reason
    if dead_inputs(hessians):
        opt = dataclasses.replace(opt, **families.cleared(opt))
        note = "its inputs are all zero on the calibration data: nothing to fit, left dense"
    mats = layer.matrices(w)
    solved = families.compresses(opt)
    quantize = families.of_role(opt, "quantize")
    grids = quantize.layer_grids(mats, opt) if quantize is not None else [None] * len(mats)
    fits = [solve_group(*solver.prepare(M, acc.hessian, options.damp), opt, None if pruned is None else pruned[g],
                        grids[g]) for g, (M, acc) in enumerate(zip(mats, hessians))] if solved else []
    loss = sum(f.loss for f in fits)
    notes = []
    if solved and p.normalized and options.variance_correction and opt.per_tensor:
        notes.append("no variance correction (per-tensor weight scales)")
    elif solved and p.normalized and options.variance_correction:
        fits = [scaled(f, solver.variance_ratio(M, f.weight, acc.hessian, acc.mean))
                for f, M, acc in zip(fits, mats, hessians)]
        loss = sum(solver.layer_loss(M, f.weight, acc.hessian) for M, f, acc in zip(mats, fits, hessians))
        notes.append("variance corrected (BatchNormalization follows)")
    parts = stored_parts(fits) if fits else {}
    notes = [families.BY_KEY[k].note(v, w) for k, v in parts.items()] + [note] + notes
    weight = layer.weight_from([f.weight for f in fits] if solved else mats)
    shift = None
    if options.bias_correction and solved:
        shift = np.concatenate([(M.astype(np.float64) - f.weight) @ acc.mean
                                for M, f, acc in zip(mats, fits, hessians)])
    dense_out = sum(solver.layer_loss(M, 0, acc.hessian) for M, acc in zip(mats, hessians))
    row = summary_row(layer, weight, loss, loss / dense_out if dense_out > 0 else 0.0, "; ".join(n for n in notes if n))
    row["applied"] = solved  # False: the compression does not fit this layer, which stays dense
    return Solved(weight, row, shift, parts)


def summary_row(layer, weight, loss: float = 0.0, relative: float = 0.0, note: str = "") -> dict:
    """A layer's line in the summary and the report."""
    return {"weight": layer.weight, "op": layer.op, "shape": f"{layer.groups}×{layer.rows}×{layer.cols}",
            "sparsity": float(np.mean(weight == 0)), "layer_loss": loss, "relative_layer_error": relative,
            "note": note}
