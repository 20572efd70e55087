"""Weight-only integer storage: a quantized weight becomes integer codes, per-output-channel
scales and zero points, and a DequantizeLinear node that produces the float weight under its old
name, so the consumers are unchanged. 5–8 bits are stored as INT8/UINT8 (opset ≥ 13 for
per-axis), 2–4 bits as INT4/UINT4 (opset ≥ 21); the model's opset is raised when needed."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .nodes import replace_initializer


def opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def ensure_opset(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """The model at opset ≥ `version` (converted by onnx's version converter when lower, with the
    IR version that opset needs); names, doc strings, metadata and other domains' imports stay."""
    if opset(model) >= version:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, version)
        default = [o for o in converted.opset_import if o.domain in ("", "ai.onnx")]
        converted.ir_version = max(converted.ir_version, helper.find_min_ir_version_for(default))
        onnx.checker.check_model(converted)
    except Exception as e:
        raise ValueError(f"the model is at opset {opset(model)} and could not be converted to opset {version}, "
                         f"which this storage needs ({type(e).__name__}: {e})") from None
    return converted


def storage_opset(bits: int) -> int:
    return 21 if bits <= 4 else 13


def store_quantized(model: onnx.ModelProto, name: str, axis: int, codes: np.ndarray, scale: np.ndarray,
                    zero: np.ndarray, bits: int, symmetric: bool) -> None:
    """Replace the float initializer `name` by integer codes (same shape) + DequantizeLinear, in
    place; `scale` and `zero` have one entry per output channel, which `axis` of the tensor indexes."""
    g = model.graph
    kind = {(True, True): TensorProto.INT4, (True, False): TensorProto.UINT4,
            (False, True): TensorProto.INT8, (False, False): TensorProto.UINT8}[(bits <= 4, symmetric)]
    replace_initializer(g, name, [
        _integer_tensor(f"{name}.q", kind, np.asarray(codes)),
        numpy_helper.from_array(np.asarray(scale, dtype=np.float32), f"{name}.scale"),
        _integer_tensor(f"{name}.zero", kind, np.asarray(zero)),
    ])
    # one DequantizeLinear per consumer: onnxruntime fuses a DQ into the node it alone feeds
    users = [n for n in g.node if name in n.input]
    for k, user in enumerate(users):
        out = name if k == 0 else f"{name}.dq{k}"
        for i, x in enumerate(user.input):
            user.input[i] = out if x == name else x
        g.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zero"], [out],
                                          name=f"{out}.dequantize", axis=axis))


def _integer_tensor(name: str, kind: int, values: np.ndarray) -> onnx.TensorProto:
    """Raw little-endian storage: one byte per 8-bit value, two 4-bit values per byte (low first)."""
    flat = np.rint(values).astype(np.int64).ravel()
    if kind in (TensorProto.INT8, TensorProto.UINT8):
        return numpy_helper.from_array(values.astype(np.int8 if kind == TensorProto.INT8 else np.uint8), name)
    nibbles = (flat & 0xF).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    return helper.make_tensor(name, kind, values.shape, packed.tobytes(), raw=True)


def matmulnbits_bits(bits: int) -> int:
    """The MatMulNBits container for a b-bit grid: 4 bits up to 4, else 8."""
    return 4 if bits <= 4 else 8


def store_matmulnbits(model: onnx.ModelProto, layer, codes: np.ndarray, scale: np.ndarray, zero: np.ndarray,
                      bits: int, symmetric: bool) -> None:
    """Replace every MatMul of `layer` by onnxruntime's MatMulNBits (com.microsoft), in place.
    `codes` is the (N, K) code matrix (rows = output channels), one scale/zero per row. The
    per-channel grid is written as blocks (16 to 128 columns, whichever stores the row in the fewest
    bytes) that repeat the row's scale and zero point; symmetric codes are offset into unsigned
    storage with the default zero point."""
    g = model.graph
    n_out, k = codes.shape
    nbits = matmulnbits_bits(bits)
    block = min((16, 32, 64, 128), key=lambda b: -(-k // b) * (b * nbits // 8 + 4))  # fewest bytes per row
    blocks = -(-k // block)
    offset = 2 ** (nbits - 1) if symmetric else 0
    pad_code = (offset if symmetric else np.asarray(zero).reshape(-1, 1))
    stored = np.broadcast_to(pad_code, (n_out, blocks * block)).astype(np.int64).copy()
    stored[:, :k] = np.rint(codes).astype(np.int64) + offset
    if nbits == 4:
        packed = (stored[:, 0::2] | (stored[:, 1::2] << 4)).astype(np.uint8)
    else:
        packed = stored.astype(np.uint8)
    name = layer.weight
    inits = [numpy_helper.from_array(packed.reshape(n_out, blocks, -1), f"{name}.nbits"),
             numpy_helper.from_array(np.repeat(np.asarray(scale, np.float32), blocks), f"{name}.nbits_scale")]
    inputs = [f"{name}.nbits", f"{name}.nbits_scale"]
    if not symmetric:
        zp = np.repeat(np.rint(zero).astype(np.int64), blocks).reshape(n_out, blocks)
        if nbits == 4:
            zp = np.concatenate([zp, np.zeros((n_out, blocks % 2), np.int64)], axis=1)
            zp = zp[:, 0::2] | (zp[:, 1::2] << 4)
        inits.append(numpy_helper.from_array(zp.astype(np.uint8).ravel(), f"{name}.nbits_zero"))
        inputs.append(f"{name}.nbits_zero")
    replace_initializer(g, name, inits)
    for node in g.node:
        if node.op_type == "MatMul" and node.input[1] == name:
            node.op_type, node.domain = "MatMulNBits", "com.microsoft"
            del node.input[1:]
            node.input.extend(inputs)
            node.attribute.extend([helper.make_attribute("K", k), helper.make_attribute("N", n_out),
                                   helper.make_attribute("bits", nbits), helper.make_attribute("block_size", block)])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def add_outliers(model: onnx.ModelProto, layer, part: np.ndarray) -> str:
    """Add a float tensor (the sparse outlier part, in the weight's layout) to every dequantized
    copy of `layer`'s weight, in place: DequantizeLinear → Add(outliers) → the layer. Returns the
    initializer's name (store it sparse)."""
    g = model.graph
    name = f"{layer.weight}.outliers"
    g.initializer.append(numpy_helper.from_array(np.asarray(part, np.float32), name))
    for node in list(g.node):
        if node.op_type == "DequantizeLinear" and node.input[0] == f"{layer.weight}.q":
            out = node.output[0]
            node.output[0] = f"{out}.quantized"
            g.node.insert(list(g.node).index(node) + 1,
                          helper.make_node("Add", [node.output[0], name], [out], name=f"{out}.add_outliers"))
    return name
