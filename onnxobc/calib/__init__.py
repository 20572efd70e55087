"""Calibration: feeding the model, capturing layer inputs with onnxruntime, unfolding them."""
