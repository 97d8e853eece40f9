"""Mistakes raise exceptions whose messages name the problem: the input, what was expected and
what was given; the model file."""

from __future__ import annotations

import numpy as np
import pytest

import runnx

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper  # noqa: E402

from conftest import FIXTURES, make_model  # noqa: E402


@pytest.fixture(scope="module")
def sess():
    """y = Neg(x), x: float [batch, 3, 4]."""
    model = make_model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", 3, 4])],
    )
    return runnx.InferenceSession(model)


X = np.zeros((2, 3, 4), np.float32)


def raises(sess, feed, *patterns, output_names=None, cls=runnx.InvalidArgument):
    with pytest.raises(cls) as info:
        sess.run(output_names, feed)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in {message!r}"
    return message


def test_unknown_input_name(sess):
    raises(sess, {"wrong_name": X}, "wrong_name", "x")


def test_missing_input(sess):
    message = raises(sess, {}, "missing", "x")
    with pytest.raises(ValueError):  # onnxruntime raises ValueError here
        sess.run(None, {})
    assert message


def test_wrong_dtype(sess):
    raises(sess, {"x": X.astype(np.float64)}, "'x'", "float", "double")
    raises(sess, {"x": X.astype(np.int64)}, "'x'", "float", "int64")


def test_wrong_rank(sess):
    raises(sess, {"x": X[0]}, "'x'", "rank 3", "rank 2")


def test_wrong_shape(sess):
    raises(sess, {"x": np.zeros((2, 3, 5), np.float32)}, "'x'", "[batch, 3, 4]", "[2, 3, 5]", "dimension 2 must be 4")


def test_unknown_output_name(sess):
    raises(sess, {"x": X}, "'nope'", "y", output_names=["nope"])


def test_unsupported_numpy_dtype(sess):
    raises(sess, {"x": np.zeros((2, 3, 4), np.longdouble)}, "'x'", "float128")
    raises(sess, {"x": np.zeros((2, 3, 4), "M8[s]")}, "'x'", "datetime64")


def test_none_for_a_tensor(sess):
    raises(sess, {"x": None}, "'x'", "None")


def test_feed_must_be_a_dict_of_names(sess):
    with pytest.raises(TypeError):
        sess.run(None, [X])
    with pytest.raises(TypeError, match="str"):
        sess.run(None, {0: X})


def test_garbage_bytes():
    with pytest.raises(runnx.InvalidProtobuf, match="not a valid ONNX model"):
        runnx.InferenceSession(b"this is not an onnx model \x00\xff\x07" * 10)
    with pytest.raises(runnx.RunnxError):
        runnx.InferenceSession(b"")


def test_truncated_file(tmp_path):
    path = tmp_path / "truncated.onnx"
    data = (FIXTURES / "mnist_mlp.onnx").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(runnx.InvalidProtobuf) as info:
        runnx.InferenceSession(str(path))
    assert "truncated.onnx" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.onnx"
    with pytest.raises(FileNotFoundError) as info:
        runnx.InferenceSession(path)
    assert isinstance(info.value, runnx.NoSuchFile)
    assert "does_not_exist.onnx" in str(info.value)


def test_unknown_op_names_the_node_and_file(tmp_path):
    model = make_model(
        [helper.make_node("NoSuchOp", ["x"], ["y"], name="weird_node")],
        [helper.make_tensor_value_info("x", TP.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TP.FLOAT, [1])],
    )
    path = tmp_path / "unknown_op.onnx"
    path.write_bytes(model)
    with pytest.raises(runnx.RunnxError) as info:
        runnx.InferenceSession(str(path))
    message = str(info.value)
    assert "unknown_op.onnx" in message and "NoSuchOp" in message and "weird_node" in message


def test_errors_at_run_time_name_the_node():
    # Reshape to a size that does not fit: the kernel fails at run time.
    model = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="the_reshape")],
        [helper.make_tensor_value_info("x", TP.FLOAT, [None]), helper.make_tensor_value_info("shape", TP.INT64, [1])],
        [helper.make_tensor_value_info("y", TP.FLOAT, None)],
    )
    sess = runnx.InferenceSession(model)
    with pytest.raises(runnx.RunnxError) as info:
        sess.run(None, {"x": np.zeros(6, np.float32), "shape": np.array([4], np.int64)})
    assert "the_reshape" in str(info.value)
