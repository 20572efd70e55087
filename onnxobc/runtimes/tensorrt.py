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


def latency(model, feed: dict, repeats: int = 30, warmup: int = 5, custom_ops=()) -> float:
    import onnxruntime as ort

    from .onnxruntime import compare_latency

    reason = available()
    if reason:
        raise ValueError(f"--runtime tensorrt: {reason}")
    src = model if isinstance(model, (str, bytes)) else (str(model) if hasattr(model, "__fspath__")
                                                         else model.SerializeToString())
    sess = ort.InferenceSession(src, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    return compare_latency({"m": sess}, feed, rounds=1, repeats=repeats, warmup=warmup)["m"]


def latencies(models: dict, feed: dict, custom_ops=()) -> dict:
    """Median seconds per run of each model, one after the other."""
    return {k: latency(m, feed, custom_ops=custom_ops) for k, m in models.items()}
