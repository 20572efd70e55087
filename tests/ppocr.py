"""PP-OCRv4 det and rec, the real models of the tests, and the wheel's text-direction classifier
(PP-OCR mobile v2.0 cls, a small MobileNetV3: a classic CNN classifier): fetched from the
rapidocr-onnxruntime 1.4.4 wheel on PyPI in test set-up (cached under ~/.cache/onnxobc), and
calibrated on text images rendered here."""

from __future__ import annotations

import pathlib

import numpy as np
from wheels import unpack

WHEEL = "rapidocr-onnxruntime==1.4.4"
CACHE = pathlib.Path.home() / ".cache" / "onnxobc" / "rapidocr-1.4.4"
MODELS = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx",
          "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx"}
WORDS = ["onnx", "compress", "Optimal Brain", "2:4 sparse", "int8", "hello world", "PP-OCRv4", "Hessian 1024",
         "calibration", "exact OBS", "runtime 4x", "quantize"]


def fetch() -> dict:
    """Paths of the models; raises RuntimeError with the reason when they cannot be had."""
    unpack(WHEEL, "rapidocr_onnxruntime-1.4.4-*.whl", CACHE,
           {f"rapidocr_onnxruntime/models/{f}": CACHE / f for f in MODELS.values()})
    return {k: CACHE / f for k, f in MODELS.items()}


def text_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n RGB images (n, 3, height, width) in [0, 1] of dark text lines on light backgrounds."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=max(10, height // 3))
    out = np.empty((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        img = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(img)
        lines = 1 if height <= 64 else int(rng.integers(2, 6))
        for k in range(lines):
            y = int((k + 0.2) * height / lines)
            draw.text((int(rng.integers(2, 20)), y), " ".join(rng.choice(WORDS, 2)), font=font,
                      fill=tuple(int(v) for v in rng.integers(0, 80, 3)))
        out[i] = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return out


def det_inputs(n: int) -> np.ndarray:
    """The det model's normalisation (ImageNet mean/std), 320×320 pages."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return ((text_images(n, 320, 320) - mean) / std).astype(np.float32)


def rec_inputs(n: int) -> np.ndarray:
    """The rec model's normalisation ((x − 0.5) / 0.5), 48×320 text lines."""
    return ((text_images(n, 48, 320, seed=1) - 0.5) / 0.5).astype(np.float32)


def cls_inputs(n: int) -> np.ndarray:
    """The direction classifier's input ((x − 0.5) / 0.5, 48×192 text lines), every other one
    turned upside down (its two classes: 0° and 180°)."""
    x = (text_images(n, 48, 192, seed=2) - 0.5) / 0.5
    x[1::2] = x[1::2, :, ::-1, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32)
