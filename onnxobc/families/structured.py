"""Structured removal of whole channels: a share of each channel group's channels (a Conv's output
channels, an MLP's hidden neurons) removed with everything that reads them, by structured ExactOBS
over the consumers' Hessians (solver/structured.py), and the graph sliced to a smaller dense
model (graph/slicing.py). It spans layers, so it is applied by its own stage (channels.py) before
the per-layer families run on the smaller model."""

from __future__ import annotations

from ..errors import OptionError
from .base import Family, Flag


class Channels(Family):
    fields = ("channels",)
    flags = (Flag("channels", "--channels", "remove this share of the output channels of every layer whose channels "
                                            "can go with what reads them (channels, MLP neurons), e.g. 0.3: a smaller "
                                            "dense model, faster on every runtime", metavar="SHARE"),)
    syntax = {"channels": "c<share>"}
    role = "structured"
    curves = {"channels (structured)": ["c0.125", "c0.250", "c0.500"]}
    part = r"c(?P<c>0\.\d+)"

    def name(self, spec):
        return f"c{spec.channels:.3f}"

    def parse(self, m):
        return {"channels": round(float(m["c"]), 3)}

    def check(self, spec):
        if spec.channels is not None and not 0 < spec.channels < 1:
            raise OptionError(f"{{channels}} is the share of each group's channels removed, in (0, 1), got "
                              f"{spec.channels}")
