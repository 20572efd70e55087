"""What one compressed layer does to the model's output: the calibration loss of the whole model
with only that layer compressed (the OBC paper's per-level loss, which the budgets' DP adds up):
Σ over outputs of ‖y − y_dense‖² / ‖y_dense‖² on the held-out calibration samples (those no solve
saw, where the calibration data has a share held out), from one onnxruntime session of the probe
model (graph/probe.py), where a swap is a different feed. On the samples the Hessians came from, a
level that refits many weights looks far better than it is, and others do not: on
all-MiniLM-L6-v2 a quarter of the heads and neurons cut measured a relative error of 0.157 there
and 0.339 on held-out texts, dynamic int8 0.123 and 0.124, so the DP took cuts for cheaper than
quantization where they cost twice as much. For
int8-activation levels only the weights (and bias shift) are swapped: the activation rounding
is not in this loss."""

from __future__ import annotations

import numpy as np

from .calib.feeds import batches, model_inputs
from .graph.layers import weight_array
from .graph.probe import probe_model, shift_input
from .sessions import session

MAX_SAMPLES = 16  # enough to rank levels; every (layer, level) costs one pass over them


class LossProbe:
    def __init__(self, prep, options):
        self.prep, self.options = prep, options
        self.sess = session(probe_model(prep.model, prep.layers), custom_ops=options.custom_ops)
        self.data = {k: v[:MAX_SAMPLES] for k, v in prep.held.items()}
        self.base = {}
        for l in prep.layers:
            self.base[l.weight] = weight_array(prep.model, l.weight)
            for k in range(len(l.nodes)):
                self.base[shift_input(l, k)] = np.zeros(l.kind.channel_shape(l), np.float32)
        self.dense = self._run({})

    def _run(self, swap: dict) -> list:
        feeds = {**self.base, **swap}
        outs = [self.sess.run(None, {**b, **feeds}) for b in batches(self.data, model_inputs(self.prep.model),
                                                                       self.options.batch_size)]
        return [np.concatenate([o[i] for o in outs]).astype(np.float64) for i in range(len(outs[0]))]

    def loss(self, layer, solved) -> float:
        return self.loss_of([(layer, solved)])

    def loss_of(self, changes: list) -> float:
        """The loss with every (layer, Solved) of `changes` swapped in at once (the weights at the
        layers' own shapes)."""
        swap = {}
        for layer, solved in changes:
            swap[layer.weight] = solved.weight.astype(np.float32)
            if solved.shift is not None:
                for k in range(len(layer.nodes)):
                    swap[shift_input(layer, k)] = solved.shift.astype(np.float32).reshape(
                        layer.kind.channel_shape(layer))
        got = self._run(swap)
        return float(sum(np.sum((g - d) ** 2) / max(np.sum(d ** 2), 1e-30) for g, d in zip(got, self.dense)))


def output_errors(prep, solved: dict, options, progress=None) -> dict:
    """weight → the relative output error of the model with only that layer compressed,
    √(loss) (comparable with the verification's relative output error), for each layer of
    `solved` (weight → Solved) that was compressed."""
    progress = progress or (lambda *a: None)
    probe, out = LossProbe(prep, options), {}
    for i, layer in enumerate(prep.layers):
        s = solved[layer.weight]
        if s.row.get("applied"):
            out[layer.weight] = float(np.sqrt(probe.loss(layer, s)))
        progress("probe", i + 1, len(prep.layers), f"{layer.weight}: its error at the model's outputs")
    return out
