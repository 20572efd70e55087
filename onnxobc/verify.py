"""The end of every flow: check the output paths before any work, verify the compressed model
(onnx.checker, an onnxruntime session, each output against the dense model's on the held-out
samples), save it atomically and make the report."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
import onnx

from .calib.feeds import batches, model_inputs
from .graph.write import save_atomic
from .protos import check
from .sessions import session


def check_paths(src, dst) -> tuple:
    """(src, dst) as paths; a ValueError when the output would overwrite the input or cannot be written there."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError("the output path is the input path; the input is never overwritten")
    if not dst.parent.is_dir():
        raise ValueError(f"{dst.parent}: the output folder does not exist")
    if dst.is_dir():
        raise ValueError(f"{dst}: is a folder, not a file path for the output")
    return src, dst


def outputs(model, data: dict, batch_size: int, custom_ops=(), optimize: bool = True) -> dict:
    """The outputs of `model` (a ModelProto or a path) on `data`, batch by batch."""
    sess = session(model, custom_ops=custom_ops, optimize=optimize)
    names = [o.name for o in sess.get_outputs()]
    spec = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    parts = [sess.run(names, feed) for feed in batches(data, model_inputs(spec), batch_size)]
    return {n: np.concatenate([p[i] for p in parts]) for i, n in enumerate(names)}


def relative_errors(ref: dict, got: dict) -> dict:
    """‖y − y_ref‖ / ‖y_ref‖ per output; a ValueError when the compressed outputs are not finite."""
    errors = {}
    for name in ref:
        a, b = ref[name].astype(np.float64), got[name].astype(np.float64)
        if not np.isfinite(b).all():
            raise ValueError(f"the compressed model's output {name!r} contains NaN or Inf")
        errors[name] = float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30))
    return errors


def least_error(dense, models: dict, data: dict, batch_size: int, custom_ops=()) -> tuple:
    """(the name of the model in `models` whose largest relative output error against `dense` on
    `data` is least, {name: that error})."""
    ref = outputs(dense, data, batch_size, custom_ops)
    errors = {name: max(relative_errors(ref, outputs(m, data, batch_size, custom_ops)).values())
              for name, m in models.items()}
    return min(errors, key=errors.get), errors


def verify(dense, compressed: onnx.ModelProto, data: dict, batch_size: int, int8_kernels: bool = False,
           custom_ops=(), held_out: bool = True) -> dict:
    """onnx.checker, an onnxruntime session, and each output's relative error against the dense
    model, ‖y − y_dense‖ / ‖y_dense‖, on `data` (`held_out`: samples the calibration did not
    see). With `int8_kernels`, also the error of the QDQ graph run as written (no fusion), which
    the fused int8 kernels should match: a much larger fused error means the kernels saturate on
    this CPU."""
    check(compressed)
    ref = outputs(dense, data, batch_size, custom_ops)
    out = {"checker": "passed", "onnxruntime": "loaded and ran", "samples": len(next(iter(data.values()))),
           "held_out": held_out,
           "relative_output_error": relative_errors(ref, outputs(compressed, data, batch_size, custom_ops))}
    if int8_kernels:
        out["unfused_relative_output_error"] = relative_errors(ref, outputs(compressed, data, batch_size, custom_ops,
                                                                            optimize=False))
    return out


def finish(prep, out_model: onnx.ModelProto, dst, rows: list, options, t0: float, extra: dict | None = None) -> dict:
    """Verify `out_model` against the dense model on the held-out samples, save it atomically,
    and return the report."""
    report = {"input": str(prep.src), "output": str(dst), "options": dataclasses.asdict(options), "layers": rows,
              "skipped": [dataclasses.asdict(s) for s in prep.skipped], "notes": prep.notes,
              "folded_nodes": prep.folded, **(extra or {})}
    report["verification"] = verify(prep.src, out_model, prep.held, options.batch_size,
                                    any("QuantizeLinear" == n.op_type for n in out_model.graph.node),
                                    options.custom_ops, held_out=prep.held is not prep.calib)
    save_atomic(out_model, dst)
    report["bytes"] = {"input": prep.src.stat().st_size, "output": pathlib.Path(dst).stat().st_size}
    report["seconds"] = time.perf_counter() - t0
    return report
