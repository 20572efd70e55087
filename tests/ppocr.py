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


def _colours(rng) -> tuple:
    """A light background and a dark ink."""
    return tuple(int(v) for v in rng.integers(200, 256, 3)), tuple(int(v) for v in rng.integers(0, 80, 3))


def text_pages(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n RGB pages (n, 3, height, width) in [0, 1], 2 to 5 dark text lines on a light background."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=max(10, height // 3))
    out = np.empty((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        paper, ink = _colours(rng)
        img = Image.new("RGB", (width, height), paper)
        draw = ImageDraw.Draw(img)
        lines = int(rng.integers(2, 6))
        for k in range(lines):
            draw.text((int(rng.integers(2, 20)), int((k + 0.2) * height / lines)), " ".join(rng.choice(WORDS, 2)),
                      font=font, fill=ink)
        out[i] = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return out


def text_lines(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """n text lines (n, 3, height, width) in [-1, 1] as PP-OCR hands them to rec and cls: the crop
    of one detected line (2 words, glyphs filling most of its height) resized to `height`,
    normalised ((x − 0.5) / 0.5), squeezed to `width` when longer, else padded on the right with
    0 (PP-OCR's padding)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    out = np.zeros((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        size = int(height * rng.uniform(0.5, 0.7))
        font = ImageFont.load_default(size=size)
        text = " ".join(rng.choice(WORDS, 2))
        paper, ink = _colours(rng)
        img = Image.new("RGB", (int(font.getlength(text)) + 8, height), paper)
        ImageDraw.Draw(img).text((4, (height - size) // 2 - 2), text, font=font, fill=ink)
        if img.width > width:
            img = img.resize((width, height))
        line = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        out[i, :, :, : line.shape[2]] = (line - 0.5) / 0.5
    return out


def det_inputs(n: int) -> np.ndarray:
    """The det model's normalisation (ImageNet mean/std), 320×320 pages."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return ((text_pages(n, 320, 320) - mean) / std).astype(np.float32)


def rec_inputs(n: int) -> np.ndarray:
    """48×320 text lines (text_lines)."""
    return text_lines(n, 48, 320, seed=1)


def cls_inputs(n: int) -> np.ndarray:
    """48×192 text lines (text_lines), every other one turned upside down (the direction
    classifier's two classes: 0° and 180°)."""
    x = text_lines(n, 48, 192, seed=2)
    x[1::2] = x[1::2, :, ::-1, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32)
