"""Latency of every (layer, level) on the target runtime: each layer alone, at its real input
shape and the batch size asked for, written in the level's export format, timed (warm-up, then
the median of repeats) and cached in the database by a signature of the layer's shape and
attributes, so layers alike are timed once."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ..calib.capture import exposing
from .build import written_alone
from .store import fingerprint


def activation_shapes(prep, options) -> dict:
    """Per-sample shape of every layer's activation input (one calibration sample run)."""
    from ..sessions import session

    acts = sorted({a for l in prep.layers for a in l.activations})
    sess = session(exposing(prep.model, acts), custom_ops=options.custom_ops)
    sample = {k: v[:1] for k, v in prep.calib.items()}
    return {a: v.shape[1:] for a, v in zip(acts, sess.run(acts, sample))}


def signature(layer, input_shape) -> str:
    # "v2": the runtime's per-run overhead (an empty model's time) is subtracted
    return fingerprint("v2", layer.op, layer.weight_shape, layer.groups, layer.attrs[0], list(input_shape))


def level_model(prep, layer, level, solved, options, input_shape):
    """(`layer` alone at `level` in its export format, its feed)."""
    model = written_alone(prep, layer, level, solved, options, input_shape)
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    return model, {model.graph.input[0].name: x}


def empty_model(model, input_name: str, input_shape):
    """A model that only passes its input through, at the layer's input shape: its time is the
    runtime's fixed cost of one run, which a layer inside a whole model does not pay."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info(f"{input_name}.alone", TensorProto.FLOAT, list(input_shape))
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", [input_name], [y.name])], "empty", [x], [y]),
                          opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def layer_latencies(prep, layer, solved: dict, options, input_shape, runtime) -> dict:
    """{level name: seconds per run} of `layer` alone at each level of `solved` (Level →
    Solved), timed together (in turns where the runtime allows) so they compare fairly, less
    the time of an empty run (at least a tenth of each level's own time is kept)."""
    models, feed = {}, None
    for level, s in solved.items():
        models[level.name], feed = level_model(prep, layer, level, s, options, input_shape)
    (name,) = feed
    models[" empty"] = empty_model(prep.model, name, input_shape)
    seconds = runtime.latencies(models, feed, custom_ops=options.custom_ops)
    overhead = seconds.pop(" empty")
    return {k: max(v - overhead, 0.1 * v) for k, v in seconds.items()}
