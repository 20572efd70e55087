"""What every runtime adapter provides: a Runtime object."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform


@dataclasses.dataclass(frozen=True)
class Int8Form:
    """How a runtime wants static int8 (W8A8) written to run it with int8 kernels."""

    symmetric: bool  # int8 activations with zero point 0 (else uint8, asymmetric)
    outputs: bool  # Q/DQ on the layers' outputs too (else on their inputs only)
    elementwise: bool  # and on the element-wise ops those outputs feed (QLinearAdd, …)
    int32_bias: bool  # biases as int32 codes behind a DequantizeLinear (else left float)
    operator_form: bool  # rewritten to QLinearConv / MatMulInteger (the operator form) after the QDQ
    per_tensor: bool  # one weight scale per layer (else per output channel)


class Runtime:
    """A target runtime. Subclasses set the attributes and implement available, latencies and
    version."""

    name: str
    label: str  # as users know it
    int8: Int8Form
    max_opset: int | None = None  # the highest default-domain opset it reads
    max_ir: int | None = None  # the highest IR version it reads
    matmulnbits: bool = False  # it runs weight-only quantized MatMuls fastest as MatMulNBits
    dynamic_int8: bool = False  # it runs MatMuls with activations quantized at run time (graph/dynamic.py)

    def available(self) -> str | None:
        """None when it runs here, else why not."""
        raise NotImplementedError

    def latencies(self, models: dict, feed: dict, custom_ops=(), rounds: int = 10, repeats: int = 10,
                  progress=None, seconds: float | None = None) -> dict:
        """{key: median seconds per run} of each model (ModelProto or path) on `feed`, timed in
        turns where the runtime allows (`rounds` turns of `repeats` runs each; with `seconds`,
        fewer for a model whose runs are long: about that many seconds of them); `progress(done,
        rounds)` after each turn where they are timed in this process."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def latency_levels(self) -> list:
        """The names of the levels a speedup budget chooses from: what it runs faster than dense."""
        raise NotImplementedError

    def int8_weight_bits(self) -> int:
        """The most weight bits its int8 kernels multiply with int8 activations without saturating."""
        return 8

    def conform(self, model):
        """`model` (a ModelProto, changed in place and returned) in versions the runtime reads."""
        if self.max_opset is None and self.max_ir is None:
            return model
        from ..graph.model import limit_versions

        return limit_versions(model, self.label, self.max_opset, self.max_ir)

    def cache_key(self) -> str:
        """What a measured latency depends on besides the model: the runtime, its version, the machine."""
        return f"{self.name} {self.version()} on {machine()}"


@functools.lru_cache(maxsize=None)
def machine() -> str:
    """This machine as timings depend on it: the CPU model and the cores."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores"


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI), where int8 dot products do not saturate."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags
