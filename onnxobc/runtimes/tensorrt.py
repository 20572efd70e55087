"""TensorRT, through onnxruntime's TensorRT execution provider (onnxruntime-gpu built with it,
on a machine with TensorRT and a GPU): symmetric int8 QDQ, 2:4 sparsity. Never faked: where it is
missing, a clear error says so."""

from __future__ import annotations

from ..errors import OptionError
from ..sessions import session
from .base import Int8Form, Runtime
from .onnxruntime import compare_latency

PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


class TensorRT(Runtime):
    name, label = "tensorrt", "TensorRT"
    int8 = Int8Form(symmetric=True, outputs=False, elementwise=False,
                    int32_bias=False, operator_form=False, per_tensor=False)

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            return ("onnxruntime's TensorRT execution provider is not available here (it needs onnxruntime-gpu, "
                    "TensorRT and an NVIDIA GPU)")
        return None

    def version(self) -> str:
        import onnxruntime

        try:
            import tensorrt

            return f"{tensorrt.__version__} (onnxruntime {onnxruntime.__version__})"
        except ImportError:
            return f"onnxruntime {onnxruntime.__version__}"

    def latencies(self, models: dict, feed: dict, custom_ops=(), rounds: int = 10, repeats: int = 10,
                  progress=None, seconds: float | None = None) -> dict:
        reason = self.available()
        if reason:
            raise OptionError(f"{{runtime}} tensorrt: {reason}")
        return compare_latency({k: session(m, custom_ops, execution_providers=PROVIDERS, spinning=False)
                                for k, m in models.items()}, feed, rounds=rounds, repeats=repeats, progress=progress,
                               seconds=seconds)

    def latency_levels(self) -> list:
        return ["dense", "2:4", "w8a8", "2:4+w8a8", "w4", "lr0.500", "lr0.250"]


RUNTIME = TensorRT()
