"""Nodes that compute constants from constants (graph/constants.py): evaluated once, the same
outputs through onnxruntime, and what must stay a node stays."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_models import make_model, run
from test_channels import se_block

from onnxobc.graph.constants import fold_constants


def test_reshaped_biases_become_initializers_with_the_same_outputs():
    model, shape = se_block()
    x = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    before = run(model, {"x": x})[0]
    assert fold_constants(model) == 2
    onnx.checker.check_model(model)
    assert "Reshape" not in {n.op_type for n in model.graph.node}
    names = {t.name for t in model.graph.initializer}
    assert {"rb1", "rb2"} <= names and not {"b1", "b2", "c4", "c16"} & names  # read by the Reshapes alone: gone
    np.testing.assert_array_equal(run(model, {"x": x})[0], before)


@pytest.mark.parametrize("case", ["reads an activation", "reads an overridable input", "makes a graph output",
                                  "grows its constant"])
def test_what_stays_a_node(case):
    """Reshape(c, [2, 3]) + x, or the variant `case` names, which must not fold."""
    value = lambda name, v, t=np.float32: numpy_helper.from_array(np.array(v, t), name)  # noqa: E731
    inits = [value("c", np.arange(6)), value("shape", [2, 3], np.int64), value("reps", [2, 1], np.int64)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    op, first, second, out = "Reshape", "c", "shape", "t"
    if case == "reads an activation":
        inputs[0] = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])
        first, out = "x", "y"
    elif case == "reads an overridable input":
        inputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [6]))
    elif case == "makes a graph output":
        out = "y"
    else:  # Tile makes a larger constant than it reads
        op, first, second = "Tile", "row", "reps"
        inits.append(value("row", [[1, 2, 3]]))
    nodes = [helper.make_node(op, [first, second], [out], name="r")]
    if out == "t":
        nodes.append(helper.make_node("Add", ["t", "x"] if op == "Reshape" else ["t", "t"], ["y"], name="add"))
    model = make_model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                       [t for t in inits if t.name in {first, second}])
    count = len(model.graph.node)
    assert fold_constants(model) == 0 and len(model.graph.node) == count
