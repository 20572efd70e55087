"""Train the shipped example model: an MLP 64 → 128 → 64 → 10 on the scikit-learn digits (8×8
handwritten digits, real data), in NumPy, exported as ONNX (Gemm + Relu).

    pip install scikit-learn && python models/digits/make.py

writes, beside this script: mlp.onnx, calib.npz (input "x": 512 training images, float32,
samples first) and test.npz ("x" and "label": 360 held-out images). Deterministic (seed 0).
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).parent
SIZES = [64, 128, 64, 10]


def train(x, y, epochs=300, lr=1e-2, seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params.append([rng.standard_normal((a, b)) * np.sqrt(2 / a), np.zeros(b)])
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    onehot = np.eye(10)[y]
    for t in range(1, epochs + 1):
        for idx in np.array_split(rng.permutation(len(x)), len(x) // 64):
            acts = [x[idx]]
            for i, (W, b) in enumerate(params):
                z = acts[-1] @ W + b
                acts.append(np.maximum(z, 0) if i < len(params) - 1 else z)
            p = np.exp(acts[-1] - acts[-1].max(axis=1, keepdims=True))
            grad = (p / p.sum(axis=1, keepdims=True) - onehot[idx]) / len(idx)
            for i in reversed(range(len(params))):
                W, b = params[i]
                gW, gb = acts[i].T @ grad + 1e-4 * W, grad.sum(axis=0)
                grad = (grad @ W.T) * (acts[i] > 0)
                for j, g in enumerate((gW, gb)):  # Adam
                    m[i][j] = 0.9 * m[i][j] + 0.1 * g
                    v[i][j] = 0.999 * v[i][j] + 0.001 * g * g
                    params[i][j] -= lr * (m[i][j] / (1 - 0.9**t)) / (np.sqrt(v[i][j] / (1 - 0.999**t)) + 1e-8)
        lr *= 0.99
    return params


def export(params, matmul: bool = False) -> onnx.ModelProto:
    """Gemm + Relu, or with `matmul` MatMul + Add + Relu (the form transformer exports use)."""
    nodes, inits, cur = [], [], "x"
    for i, (W, b) in enumerate(params):
        inits += [numpy_helper.from_array((W if matmul else W.T).astype(np.float32), f"fc{i}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"fc{i}.bias")]
        out = f"fc{i}" if i < len(params) - 1 else "logits"
        if matmul:
            nodes += [helper.make_node("MatMul", [cur, f"fc{i}.weight"], [f"fc{i}.mm"], name=f"fc{i}"),
                      helper.make_node("Add", [f"fc{i}.mm", f"fc{i}.bias"], [out], name=f"fc{i}.add")]
        else:
            nodes.append(helper.make_node("Gemm", [cur, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}",
                                          transB=1))
        if i < len(params) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"relu{i}"))
            out = f"relu{i}"
        cur = out
    graph = helper.make_graph(nodes, "digits_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", params[0][0].shape[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxobc")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def digits():
    """(x, y, test indices, training indices) of the scikit-learn digits, split as shipped."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target
    order = np.random.default_rng(0).permutation(len(x))
    return x, y, order[:360], order[360:]


def main():
    x, y, test, trainset = digits()
    params = train(x[trainset].astype(np.float64), y[trainset])
    model = export(params)
    onnx.save(model, HERE / "mlp.onnx")
    np.savez(HERE / "calib.npz", x=x[trainset[:512]])
    np.savez(HERE / "test.npz", x=x[test], label=y[test].astype(np.int64))
    logits = x[test] @ params[0][0] + params[0][1]
    for W, b in params[1:]:
        logits = np.maximum(logits, 0) @ W + b
    print(f"test accuracy {np.mean(logits.argmax(axis=1) == y[test]):.4f} on {len(test)} held-out digits")


if __name__ == "__main__":
    main()
