"""TensorRT, through onnxruntime's TensorRT execution provider (onnxruntime-gpu built with it,
on a machine with TensorRT and a GPU). Never faked: where it is missing, a clear error says so."""

from __future__ import annotations


def available() -> str | None:
    """None when TensorRT can run here, else the reason it cannot."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return ("onnxruntime's TensorRT execution provider is not available here (it needs onnxruntime-gpu, "
                "TensorRT and an NVIDIA GPU)")
    return None


def latencies(models: dict, feed: dict, rounds: int = 10, repeats: int = 10, custom_ops=()) -> dict:
    """Median seconds per run of each model on TensorRT, timed in turns."""
    from .onnxruntime import compare_latency, session

    reason = available()
    if reason:
        raise ValueError(f"--runtime tensorrt: {reason}")
    trt = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    return compare_latency({k: session(m, custom_ops, execution_providers=trt, spinning=False) for k, m in models.items()}, feed,
                           rounds=rounds, repeats=repeats)
