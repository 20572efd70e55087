"""Int8 only where it pays: with int8 activations, the layers whose int8 form runs slower than
float on the target runtime stay float (small or depthwise Convs, and CPUs whose int8 kernels are
slow: quantize_static's int8 PP-OCR text-direction classifier ran at 0.76x its float speed).

Each layer is timed alone in both forms at its real input shape (timing.py); when some are
slower in int8, the model is written again with them float, and the two whole models are timed
side by side: the faster is kept, so a layer alone never decides against the model measured."""

from __future__ import annotations

from .export import write
from .prepare import activations_quantized
from .timing import activation_shapes, latencies, timing_batch, times_alone


def slower_in_int8(prep, solved: dict, options, progress) -> dict:
    """{weight: (int8 s, float s)} for each layer with int8 activations whose int8 form, timed
    alone on the target runtime, is slower than its float form."""
    layers = [l for l in prep.layers if l.weight in solved and activations_quantized(l, options)]
    if not layers:
        return {}
    shapes = activation_shapes(prep, options)
    batch = timing_batch(prep, options)
    out = {}
    for i, l in enumerate(layers):
        progress("int8 speed", i, len(layers), f"{l.weight}: int8 and float timed alone")
        s = times_alone(prep, l, {"int8": (solved[l.weight], options), "float": (None, None)}, options,
                        (batch,) + tuple(shapes[l.activations[0]]))
        if s["int8"] > s["float"]:
            out[l.weight] = (s["int8"], s["float"])
    progress("int8 speed", len(layers), len(layers), f"{len(out)} of {len(layers)} layers slower in int8 alone")
    return out


def keep_float_where_slower(prep, solved: dict, settings: dict, model, options, progress) -> tuple:
    """(the model to keep, report entry or None): `model` (every layer written as `settings` ask),
    or, where some layers' int8 forms are slower alone and the whole model with them float
    measures faster, that model. The kept-float layers' summary rows say so."""
    reason = options.target.available()
    if reason:
        prep.notes.append(f"int8 layers not timed against float ({options.target.label}: {reason})")
        return model, None
    slow = slower_in_int8(prep, solved, options, progress)
    if not slow:
        return model, None
    mixed = write(prep, {w: s for w, s in solved.items() if w not in slow}, settings)
    seconds = latencies(prep, options, int8=model, mixed=mixed)
    kept = seconds["mixed"] < seconds["int8"]
    entry = {"slower_alone": {w: {"int8_ms": a * 1e3, "float_ms": b * 1e3} for w, (a, b) in slow.items()},
             "whole_model_ms": {"all int8": seconds["int8"] * 1e3, "those float": seconds["mixed"] * 1e3},
             "kept_float": kept}
    msg = (f"{len(slow)} layers ran slower in int8 than in float, timed alone; the model with them float ran "
           f"{seconds['mixed'] * 1e3:.2f} ms a batch against {seconds['int8'] * 1e3:.2f} ms all int8, so ")
    if not kept:
        prep.notes.append(msg + "all stay int8")
        return model, entry
    for w, (a, b) in slow.items():
        row = solved[w].row
        row["storage"] = "float (int8 slower here)"
        row["note"] = "; ".join(n for n in (row["note"], f"int8 {a * 1e3:.3f} ms vs float {b * 1e3:.3f} ms alone") if n)
    prep.notes.append(msg + "those stay float")
    return mixed, entry
