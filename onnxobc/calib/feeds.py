"""Calibration data: samples for every graph input, sample axis first, validated against the
model. An input of rank r takes an array of rank r (a batch: its axis 0 is the model's batch
axis, split into batches as needed) or of rank r + 1 (one whole feed per sample, run one at a
time: for inputs without a batch axis first, such as scalars, or a state of shape (2, batch, 128)).
Sources: an .npz file (never unpickled), a folder of them, an onnxruntime
CalibrationDataReader (anything with get_next()), or synthetic data when asked for explicitly."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import onnx

from ..errors import OptionError
from ..graph.model import element_dtype


def model_inputs(model: onnx.ModelProto) -> dict:
    """name → (numpy dtype, dims with None for symbolic ones, and for -1, which Paddle exports write for a
    dynamic axis) of the graph inputs that are not initializers."""
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for i in model.graph.input:
        if i.name in inits:
            continue
        if i.type.WhichOneof("value") != "tensor_type":
            raise ValueError(f"graph input {i.name!r} is a {i.type.WhichOneof('value') or 'typeless value'}, not a "
                             "tensor: only tensor inputs can be calibrated")
        t = i.type.tensor_type
        out[i.name] = (element_dtype(t.elem_type, f"graph input {i.name!r}"),
                       [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim])
    return out


def _from_npz(path: pathlib.Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as e:
        raise ValueError(f"{path}: holds pickled objects, which are never loaded ({e})") from None
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None


def _concat(parts: list, where: str) -> dict:
    names = set(parts[0])
    for p in parts[1:]:
        if set(p) != names:
            raise ValueError(f"{where}: the parts name different inputs ({sorted(names)} vs {sorted(p)})")
    return {n: np.concatenate([np.asarray(p[n]) for p in parts], axis=0) for n in names}


def load_calibration(source, model: onnx.ModelProto, samples: int = 16, seed: int = 0) -> dict:
    """Validated calibration arrays {input name: array (samples, …)}. `source` is a path to an
    .npz or a folder of .npz files, a CalibrationDataReader, or "random" (`samples` synthetic
    samples, with a warning: a compressor calibrated on noise is rarely what anyone wants)."""
    spec = model_inputs(model)
    if isinstance(source, str) and source == "random":
        warnings.warn("calibrating on random inputs (--calib random): results reflect noise, not your data",
                      stacklevel=2)
        return _random(spec, samples, seed)
    if hasattr(source, "get_next"):
        parts = []
        while (feed := source.get_next()) is not None:
            parts.append(feed)
        if not parts:
            raise ValueError("the calibration data reader returned no feeds")
        data = _concat(parts, "the calibration data reader")
    else:
        path = pathlib.Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.npz"))
            if not files:
                raise ValueError(f"{path}: the folder holds no .npz files")
            data = _concat([_from_npz(f) for f in files], str(path))
        elif path.is_file():
            data = _from_npz(path)
        else:
            raise ValueError(f"{path}: no such calibration file or folder")
    return validate(data, spec)


def validate(data: dict, spec: dict) -> dict:
    missing, extra = sorted(set(spec) - set(data)), sorted(set(data) - set(spec))
    if missing or extra:
        raise ValueError("calibration inputs do not match the model: "
                         + "; ".join(x for x in [f"missing {missing}" if missing else "",
                                                 f"not model inputs {extra}" if extra else ""] if x)
                         + f" (the model takes {sorted(spec)})")
    counts = set()
    for name, (dtype, dims) in spec.items():
        a = np.asarray(data[name])
        if dtype == object:  # an ONNX string input: text arrays (.npz keeps them without pickle)
            if a.dtype.kind not in "US":
                raise ValueError(f"calibration input {name!r} is {a.dtype}, the model takes strings")
        elif a.dtype != dtype:
            raise ValueError(f"calibration input {name!r} is {a.dtype}, the model takes {dtype}")
        if a.ndim not in (len(dims), len(dims) + 1):
            raise ValueError(f"calibration input {name!r} has shape {a.shape}, the model takes rank {len(dims)} "
                             f"{_fmt(dims)}: give an array of rank {len(dims)} (a batch along axis 0) or "
                             f"{len(dims) + 1} (one whole feed per sample)")
        for axis, (n, d) in enumerate(zip(a.shape[1:], dims if a.ndim > len(dims) else dims[1:]), start=1):
            if d is not None and n != d:
                raise ValueError(f"calibration input {name!r} has shape {a.shape}, the model takes {_fmt(dims)} "
                                 f"(axis {axis} must be {d})")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"calibration input {name!r} contains NaN or Inf")
        if a.shape[0] < 1:
            raise ValueError(f"calibration input {name!r} has no samples")
        counts.add(a.shape[0])
    if len(counts) > 1:
        raise ValueError(f"calibration inputs have different sample counts {sorted(counts)}")
    return {n: np.asarray(data[n]) for n in spec}


def batches(data: dict, spec: dict, batch_size: int):
    """Feeds of at most `batch_size` samples (one at a time where the model fixes its batch axis
    or an input is given one whole feed per sample)."""
    n = len(next(iter(data.values())))
    whole = {k for k, v in data.items() if np.ndim(v) > len(spec[k][1])}
    fixed = {dims[0] for _, dims in spec.values() if dims and dims[0] is not None}
    step = 1 if whole else min(fixed) if fixed else max(1, batch_size)
    for i in range(0, n, step):
        yield {k: np.asarray(v[i]) if k in whole else v[i : i + step] for k, v in data.items()}


def _fmt(dims):
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _random(spec, samples, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, dims) in spec.items():
        if any(d is None for d in dims[1:]):
            raise OptionError(f"{{calib}} random needs static shapes, but input {name!r} is {_fmt(dims)}; "
                             "give calibration data instead")
        if dtype == object:
            raise OptionError(f"{{calib}} random cannot make text for the string input {name!r}; give calibration data")
        shape = (samples,) + tuple(dims[1:])
        out[name] = (rng.integers(0, 2, shape) if dtype.kind in "iub" else rng.standard_normal(shape)).astype(dtype)
    return out
