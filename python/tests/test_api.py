"""The onnxruntime-compatible API: sessions, NodeArgs, metadata, options, providers, and
sequence, optional and map values."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import runnx

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper  # noqa: E402

from conftest import FIXTURES, identity_model, make_model  # noqa: E402

MLP = FIXTURES / "mnist_mlp.onnx"


def test_module_functions():
    assert runnx.get_available_providers() == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in runnx.get_all_providers()
    assert "CUDAExecutionProvider" in runnx.get_all_providers()
    assert runnx.get_device() == "CPU"
    assert isinstance(runnx.__version__, str) and runnx.__version__


def test_enums_mirror_onnxruntime():
    level = runnx.GraphOptimizationLevel
    assert [(m.name, m.value) for m in level] == [
        ("ORT_DISABLE_ALL", 0),
        ("ORT_ENABLE_BASIC", 1),
        ("ORT_ENABLE_EXTENDED", 2),
        ("ORT_ENABLE_LAYOUT", 3),
        ("ORT_ENABLE_ALL", 99),
    ]
    assert str(level.ORT_ENABLE_ALL) == "GraphOptimizationLevel.ORT_ENABLE_ALL"
    assert int(level.ORT_ENABLE_BASIC) == 1
    assert [m.name for m in runnx.ExecutionMode] == ["ORT_SEQUENTIAL", "ORT_PARALLEL"]


def test_matches_onnxruntime_signatures():
    """Names, types and shapes (symbolic dims as str, unknown as None) as onnxruntime reports."""
    ort = pytest.importorskip("onnxruntime")
    models = [str(MLP), str(FIXTURES / "mnist_cnn.onnx"), _typed_model()]
    for model in models:
        a = ort.InferenceSession(model, providers=["CPUExecutionProvider"]) if isinstance(model, str) else ort.InferenceSession(model)
        b = runnx.InferenceSession(model)
        for got, want in ((b.get_inputs(), a.get_inputs()), (b.get_outputs(), a.get_outputs())):
            assert [(x.name, x.type, x.shape) for x in got] == [(x.name, x.type, x.shape) for x in want]
            assert [str(x) for x in got] == [str(x) for x in want]
        ma, mb = a.get_modelmeta(), b.get_modelmeta()
        for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "custom_metadata_map"):
            assert getattr(mb, field) == getattr(ma, field), field


def _typed_model() -> bytes:
    """Inputs of every kind of declared type: unknown rank, unknown and named dims, sequence,
    optional; and metadata."""
    tensor_unknown_rank = helper.make_tensor_value_info("a", TP.FLOAT, None)
    tensor_dims = helper.make_tensor_value_info("b", TP.INT64, [None, "n", 3])
    seq = helper.make_tensor_sequence_value_info("s", TP.FLOAT, None)
    opt = helper.make_value_info("o", helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, [2])))
    outs = [
        helper.make_tensor_value_info("a_out", TP.FLOAT, None),
        helper.make_tensor_value_info("b_out", TP.INT64, [None, "n", 3]),
        helper.make_tensor_sequence_value_info("s_out", TP.FLOAT, None),
        helper.make_value_info("o_out", helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, [2]))),
    ]
    nodes = [helper.make_node("Identity", [i], [i + "_out"]) for i in "abso"]
    graph = helper.make_graph(nodes, "typed", [tensor_unknown_rank, tensor_dims, seq, opt], outs, doc_string="graph doc")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tests", doc_string="model doc")
    model.ir_version = 9
    model.domain = "org.example"
    model.model_version = 7
    helper.set_model_props(model, {"author": "runnx", "purpose": "tests"})
    return model.SerializeToString()


def test_node_args_and_metadata():
    sess = runnx.InferenceSession(_typed_model())
    inputs = sess.get_inputs()
    assert [(i.name, i.type, i.shape) for i in inputs] == [
        ("a", "tensor(float)", []),
        ("b", "tensor(int64)", [None, "n", 3]),
        ("s", "seq(tensor(float))", []),
        ("o", "optional(tensor(float))", [2]),
    ]
    assert repr(inputs[1]) == "NodeArg(name='b', type='tensor(int64)', shape=[None, 'n', 3])"
    meta = sess.get_modelmeta()
    assert meta.producer_name == "tests"
    assert meta.graph_name == "typed"
    assert meta.domain == "org.example"
    assert meta.description == "model doc"
    assert meta.graph_description == "graph doc"
    assert meta.version == 7
    assert meta.custom_metadata_map == {"author": "runnx", "purpose": "tests"}
    assert sess.get_overridable_initializers() == []


def test_overridable_initializers_are_listed():
    w = helper.make_tensor("w", TP.FLOAT, [2], [1.0, 2.0])
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2]), helper.make_tensor_value_info("w", TP.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TP.FLOAT, [2])],
        initializer=[w],
        ir_version=3,
        opset=9,
    )
    sess = runnx.InferenceSession(model)
    assert [i.name for i in sess.get_inputs()] == ["x"]
    assert [(i.name, i.type, i.shape) for i in sess.get_overridable_initializers()] == [("w", "tensor(float)", [2])]


def test_sequences_optionals_in_and_out():
    sess = runnx.InferenceSession(_typed_model())
    a = np.ones((2, 2), np.float32)
    b = np.arange(6, dtype=np.int64).reshape(1, 2, 3)
    seq = [np.ones(2, np.float32), np.zeros((1, 3), np.float32)]
    out = sess.run(None, {"a": a, "b": b, "s": seq, "o": np.array([1, 2], np.float32)})
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], b)
    assert isinstance(out[2], list) and len(out[2]) == 2
    for got, want in zip(out[2], seq):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out[3], [1, 2])
    out = sess.run(["s_out", "o_out"], {"a": a, "b": b, "s": [], "o": None})
    assert out == [[], None]


def test_maps_in_and_out():
    for key_type, value_type, value in (
        (TP.INT64, TP.FLOAT, {1: 0.5, 7: 2.0}),
        (TP.STRING, TP.INT64, {"a": 3, "b": -4}),
    ):
        map_type = helper.make_map_type_proto(key_type, helper.make_tensor_type_proto(value_type, []))
        model = make_model(
            [helper.make_node("Identity", ["m"], ["m_out"])],
            [helper.make_value_info("m", map_type)],
            [helper.make_value_info("m_out", map_type)],
            opset=18,
            ir_version=9,
        )
        sess = runnx.InferenceSession(model)
        assert sess.get_inputs()[0].type.startswith("map(")
        assert sess.run(None, {"m": value}) == [value]


def test_output_selection_and_order():
    model = make_model(
        [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])],
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])],
        [helper.make_tensor_value_info("a", TP.FLOAT, [2]), helper.make_tensor_value_info("b", TP.FLOAT, [2])],
    )
    sess = runnx.InferenceSession(model)
    x = np.array([1, -2], np.float32)
    a, b = sess.run(None, {"x": x})
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, -x)
    assert len(sess.run([], {"x": x})) == 2
    (b_only,) = sess.run(["b"], {"x": x})
    np.testing.assert_array_equal(b_only, -x)
    b2, a2 = sess.run(["b", "a"], {"x": x})
    np.testing.assert_array_equal(b2, -x)
    np.testing.assert_array_equal(a2, x)
    sess.run(None, {"x": x}, runnx.RunOptions())


def test_session_options_are_used(tmp_path):
    so = runnx.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = runnx.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.execution_mode = runnx.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.enable_profiling = False
    so.optimized_model_filepath = str(tmp_path / "unused.onnx")
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    sess = runnx.InferenceSession(identity_model(TP.FLOAT, [2]), sess_options=so)
    assert sess.get_session_options() is so
    assert sess._sess.threads == 1
    for level in runnx.GraphOptimizationLevel:
        so.graph_optimization_level = level
        runnx.InferenceSession(identity_model(TP.FLOAT, [2]), so).run(None, {"x": np.zeros(2, np.float32)})
    so.graph_optimization_level = 42
    with pytest.raises(ValueError, match="42"):
        runnx.InferenceSession(identity_model(TP.FLOAT, [2]), so)


def test_providers():
    model = identity_model(TP.FLOAT, [2])
    sess = runnx.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_provider_options() == {"CPUExecutionProvider": {}}
    sess = runnx.InferenceSession(model, providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})])
    assert sess.get_provider_options() == {"CPUExecutionProvider": {"arena_extend_strategy": "kSameAsRequested"}}
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        sess = runnx.InferenceSession(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    with pytest.warns(UserWarning, match="NoSuchExecutionProvider"):
        sess = runnx.InferenceSession(model, providers=["NoSuchExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sess.set_providers(["CPUExecutionProvider"])
    with pytest.raises(ValueError):
        runnx.InferenceSession(model, providers=["CPUExecutionProvider"], provider_options=[{}, {}])


def test_model_from_path_like_and_bytes(tmp_path):
    path = tmp_path / "typed.onnx"
    path.write_bytes(_typed_model())
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes())):
        sess = runnx.InferenceSession(source)
        assert [i.name for i in sess.get_inputs()] == ["a", "b", "s", "o"]
    with pytest.raises(TypeError, match="Unable to load from type"):
        runnx.InferenceSession(42)


def test_concurrent_runs_release_the_gil():
    model = make_model(
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TP.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TP.FLOAT, ["n"])],
    )
    sess = runnx.InferenceSession(model)
    errors = []

    def worker(seed):
        x = np.full(1000, seed, np.float32)
        for _ in range(200):
            (y,) = sess.run(None, {"x": x})
            if not np.array_equal(y, -x):
                errors.append(seed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_capi_exception_names():
    from runnx.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidProtobuf, NoSuchFile

    assert issubclass(InvalidArgument, runnx.RunnxError) and issubclass(InvalidArgument, ValueError)
    assert issubclass(NoSuchFile, FileNotFoundError)
    assert issubclass(Fail, Exception) and issubclass(InvalidProtobuf, runnx.RunnxError)
