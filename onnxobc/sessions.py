"""onnxruntime as the engine that runs calibration, verification and the loss probe: sessions
(with the custom-op libraries the user named) whose failures are ValueErrors that say what went
wrong. onnxruntime as a target to time and deploy on is runtimes/onnxruntime.py. CPU by default;
the CUDA provider is used when onnxruntime-gpu is the installed package and a device is visible."""

from __future__ import annotations

import contextlib
import pathlib

from .protos import is_large, on_disk

CUSTOM_OP_LIBRARIES = {"extensions": "onnxruntime-extensions"}


def providers() -> list:
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def custom_op_library(name: str) -> str:
    """The shared library for a custom-op entry: 'extensions' (onnxruntime-extensions) or a path
    to a library file."""
    from .errors import OptionError

    if name == "extensions":
        try:
            import onnxruntime_extensions
        except ImportError:
            raise OptionError("{custom_ops} extensions needs onnxruntime-extensions: "
                              "pip install onnxruntime-extensions") from None
        return onnxruntime_extensions.get_library_path()
    path = pathlib.Path(name)
    if not path.is_file():
        raise OptionError(f"{{custom_ops}} {name}: neither 'extensions' nor a custom-op library file")
    return str(path.resolve())


def session(model, custom_ops=(), optimize: bool = True, execution_providers=None, spinning: bool = True):
    """An InferenceSession for a path or a ModelProto, with the named custom-op libraries
    registered; `optimize=False` runs the graph as written (no fusions); the providers default
    to providers(). `spinning=False` stops its idle threads from busy-waiting, for sessions
    timed in turns: otherwise one session's spinning threads slow the next one down (on 2
    cores, a dense MLP measured 2.1 ms alone and 3.0–3.3 ms in turns with spinning, 2.2–2.5 ms
    without)."""
    import onnxruntime as ort

    from .errors import OptionError

    so = ort.SessionOptions()
    so.log_severity_level = 4  # its errors reach the user as ValueErrors, not as log lines
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for lib in custom_ops:
        so.register_custom_ops_library(custom_op_library(lib))
    try:
        with on_disk(model) if _large(model) else contextlib.nullcontext(_bytes(model)) as src:
            return Session(ort.InferenceSession(src, so, providers=execution_providers or providers()))
    except Exception as e:  # onnxruntime raises its own exception types
        domains = sorted({o.domain for o in _model_of(model).opset_import}
                         - {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
        if domains and not custom_ops:
            raise OptionError(f"onnxruntime cannot run the model: {_brace_free(str(e).strip()[:500])}; the model uses "
                              f"operators from {', '.join(domains)}: name their library with {{custom_ops}} (e.g. "
                              "{custom_ops} extensions for onnxruntime-extensions)") from None
        raise ValueError(f"onnxruntime cannot run the model: {str(e).strip()[:500]}") from None


def _large(model) -> bool:
    """A ModelProto past protobuf's limit: it reaches onnxruntime as a file with external data
    (onnxruntime reads the tensors in while it makes the session)."""
    return not isinstance(model, (str, pathlib.Path)) and is_large(model)


def _bytes(model):
    return str(model) if isinstance(model, (str, pathlib.Path)) else model.SerializeToString()


def _brace_free(text: str) -> str:
    """`text` safe inside an OptionError template (its braces are not option names)."""
    return text.replace("{", "(").replace("}", ")")


class Session:
    """An onnxruntime InferenceSession whose run() failures are ValueErrors that say so."""

    def __init__(self, sess):
        self.sess = sess

    def run(self, names, feed):
        try:
            return self.sess.run(names, feed)
        except Exception as e:  # onnxruntime's own exception types
            raise ValueError(f"onnxruntime failed running the model: {' '.join(str(e).split())[:500]}") from None

    def __getattr__(self, name):
        return getattr(self.sess, name)


def _model_of(model):
    import onnx

    return onnx.load(str(model), load_external_data=False) if isinstance(model, (str, pathlib.Path)) else model
