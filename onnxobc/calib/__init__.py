"""Calibration: feeding the model, capturing layer inputs with onnxruntime into Hessians, activation
ranges for int8."""
