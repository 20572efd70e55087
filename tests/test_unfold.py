import numpy as np
import pytest
from onnx_models import conv_model, run

from onnxobc.graph.unfold import unfold
from onnxobc.graph.layers import discover, weight_array

CASES = [
    dict(c_in=3, c_out=4, kernel=(3, 3)),
    dict(c_in=4, c_out=6, kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(c_in=4, c_out=4, kernel=(3, 3), dilations=[2, 2], pads=[2, 1, 0, 2]),
    dict(c_in=6, c_out=4, kernel=(1, 1), group=2),
    dict(c_in=8, c_out=8, kernel=(3, 3), group=8, pads=[1, 1, 1, 1]),  # depthwise
    dict(c_in=4, c_out=8, kernel=(3, 3), group=4, strides=[2, 1]),  # depthwise, multiplier 2
    dict(c_in=3, c_out=5, kernel=(2, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(c_in=3, c_out=5, kernel=(3, 2), auto_pad="SAME_LOWER", strides=[1, 2]),  # ORT: no dilation with SAME
    dict(c_in=3, c_out=5, kernel=(3, 3), auto_pad="VALID"),
    dict(c_in=4, c_out=6, kernel=(5,), strides=[3], pads=[2, 1], group=2),  # 1-D
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_unfold_times_weight_view_is_onnxruntime_conv(case):
    case = dict(case)
    c_in, c_out, kernel = case.pop("c_in"), case.pop("c_out"), case.pop("kernel")
    group = case.pop("group", 1)
    model, W = conv_model(c_in, c_out, kernel, group=group, bias=False, **case)
    x = np.random.default_rng(1).standard_normal((2, c_in) + (9, 11)[: len(kernel)]).astype(np.float32)
    (y,) = run(model, {"x": x})
    (layer,), skipped = discover(model)
    assert not skipped and layer.groups == group
    mats = layer.matrices(weight_array(model, "W"))
    cols = unfold(x, kernel, case.get("strides"), case.get("dilations"), case.get("pads"),
                  case.get("auto_pad", "NOTSET"), group)
    assert len(mats) == len(cols) == group
    assert all(m.shape == (layer.rows, layer.cols) and c.shape[1] == layer.cols for m, c in zip(mats, cols))
    out = np.concatenate([c @ m.T for c, m in zip(cols, mats)], axis=1)  # (N·positions, C_out)
    expect = np.moveaxis(y, 1, -1).reshape(-1, c_out)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)
