"""Latency on the target runtime: whole models side by side on one calibration batch, and one
layer alone at its real input shape in the form some options write it (or float), less the
runtime's fixed cost of a run. Budgets (costs.py, db/profile.py) and int8-where-it-pays
(slow_int8.py) time through here."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import TensorProto, helper

from .calib.capture import exposing
from .calib.feeds import batches, model_inputs
from .export import write
from .graph.single import single_layer_model
from .sessions import session


COST_SECONDS = 1.0  # of timed runs per model where a plan's costs are timed (a layer alone, reach's whole
# models): where runs are long, fewer of them (a long run averages the machine's noise in itself)


def timing_feed(prep, options) -> dict:
    """One calibration batch, the batch every latency is measured at."""
    return next(batches(prep.calib, model_inputs(prep.model), options.batch_size))


def timing_batch(prep, options) -> int:
    """The batch size latencies are measured at: the first calibration batch's."""
    return len(next(iter(timing_feed(prep, options).values())))


def latencies(prep, options, **models) -> dict:
    """Seconds per batch of each named model (ModelProto or path), timed together (in turns where
    the runtime allows) on one calibration batch."""
    return options.target.latencies(models, timing_feed(prep, options), custom_ops=options.custom_ops)


def activation_shapes(prep, options) -> dict:
    """Per-sample shape of every layer's activation input (one calibration sample run)."""
    acts = sorted({a for l in prep.layers for a in l.activations})
    sess = session(exposing(prep.model, acts), custom_ops=options.custom_ops)
    sample = {k: v[:1] for k, v in prep.calib.items()}
    return {a: v.shape[1:] for a, v in zip(acts, sess.run(acts, sample))}


def layer_model(prep, layer, solved, options, input_shape):
    """`layer` alone (graph/single.py) at `input_shape`, written as `options` ask with `solved` (a
    solve.Solved), or float as it is when `options` is None."""
    model, view = single_layer_model(prep.model, layer, input_shape)
    if options is None:
        return model
    node = model.graph.node[0]
    alone = dataclasses.replace(prep, model=model, layers=[view],
                                ranges={node.input[0]: (-1.0, 1.0), node.output[0]: (-1.0, 1.0)})
    return write(alone, {layer.weight: solved.with_own_row()}, {layer.weight: options})


def empty_model(model, input_name: str, input_shape):
    """A model that only passes its input through, at the layer's input shape: its time is the
    runtime's fixed cost of one run, which a layer inside a whole model does not pay."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))
    y = helper.make_tensor_value_info(f"{input_name}.alone", TensorProto.FLOAT, list(input_shape))
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", [input_name], [y.name])], "empty", [x], [y]),
                          opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def times_alone(prep, layer, forms: dict, options, input_shape) -> dict:
    """{name: seconds per run} of `layer` alone in each of `forms` ({name: (Solved, Options), or
    (anything, None) for float}), timed together on the target runtime (in turns where it
    allows) so they compare fairly, less the time of an empty run (at least a tenth of each
    form's own time is kept)."""
    models = {name: layer_model(prep, layer, s, o, input_shape) for name, (s, o) in forms.items()}
    name = models[next(iter(models))].graph.input[0].name
    models[" empty"] = empty_model(prep.model, name, input_shape)
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    seconds = options.target.latencies(models, {name: x}, custom_ops=options.custom_ops, seconds=COST_SECONDS)
    overhead = seconds.pop(" empty")
    return {k: max(v - overhead, 0.1 * v) for k, v in seconds.items()}
