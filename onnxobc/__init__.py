"""onnxobc: post-training compression of ONNX models with Optimal Brain Compression."""

__version__ = "0.1.0"
