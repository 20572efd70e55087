import json
import subprocess
import sys

import onnx
from onnx import TensorProto, helper
from onnx_models import conv_model


def onnxobc(*args):
    return subprocess.run([sys.executable, "-m", "onnxobc", *args], capture_output=True, text=True)


def test_inspect_lists_layers_shapes_and_flops(tmp_path):
    model, _ = conv_model(4, 6, (3, 3), group=2, pads=[1, 1, 1, 1])
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]))
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    r = onnxobc("inspect", str(path), "--json")
    assert r.returncode == 0, r.stderr
    (layer,) = json.loads(r.stdout)["layers"]
    assert (layer["op"], layer["groups"], layer["rows"], layer["cols"]) == ("Conv", 2, 3, 18)
    assert layer["flops_per_sample"] == 2 * 64 * 6 * 18  # 8×8 positions, 6 outputs, 2×3×3 inputs each
    text = onnxobc("inspect", str(path))
    assert text.returncode == 0 and "2 × 3 × 18" in text.stdout and "0.014" in text.stdout


def test_inspect_shows_the_channel_groups_compress_cuts(tmp_path):
    """A squeeze-excitation block as Paddle2ONNX writes it: its biases added through Reshape fold
    first, as compress folds them, and the gate's Conv is cut with the channels it scales."""
    from test_channels import se_block

    path = tmp_path / "se.onnx"
    onnx.save(se_block()[0], path)
    before = path.read_bytes()
    found = json.loads(onnxobc("inspect", str(path), "--json").stdout)
    assert found["folded_nodes"] == 4  # two Reshapes computed once, the two bias Adds folded into their Convs
    (expand,) = [g for g in found["channel_groups"] if g["producer"] == "we"]
    assert expand["blocked"] is None and expand["gates"] == ["w2"]
    text = onnxobc("inspect", str(path)).stdout
    assert "4 nodes folded" in text and "the gate made by w2" in text and "gate on the channels of 'we'" in text
    assert path.read_bytes() == before


def test_inspect_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    for path in (bad, tmp_path / "missing.onnx"):
        r = onnxobc("inspect", str(path))
        assert r.returncode == 2
        assert r.stderr.startswith("onnxobc: error: ") and "Traceback" not in r.stderr


def test_inspect_input_shape_fixes_dynamic_dims(tmp_path):
    model, _ = conv_model(3, 4, (3, 3))  # input (n, 3, s0, s1): FLOPs unknown until fixed
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    (layer,) = json.loads(onnxobc("inspect", str(path), "--json").stdout)["layers"]
    assert layer["flops_per_sample"] is None
    r = onnxobc("inspect", str(path), "--json", "--input-shape", "x=1,3,10,12")
    (layer,) = json.loads(r.stdout)["layers"]
    assert layer["flops_per_sample"] == 2 * (8 * 10) * 4 * 27
    for bad in ("y=1,3,10,12", "x=1,3", "x=a,b", "x="):
        r = onnxobc("inspect", str(path), "--input-shape", bad)
        assert r.returncode == 2 and "--input-shape" in r.stderr
