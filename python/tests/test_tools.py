"""runnx.tools: each tool against an independent reference (onnx's checker and shape inference,
onnxruntime running the tools' output models, the torch fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runnx
import runnx.tools as rt

from conftest import REPO, load_npz, make_model, model_path

MODELS = ["mnist_mlp", "mnist_cnn", "resnet18", "bert_tiny"]
TORCH = REPO / "tests" / "data" / "torch"

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def ort_outputs(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


@pytest.mark.parametrize("name", MODELS)
def test_check_model_accepts_the_bench_models(name):
    problems = rt.check_model(model_path(name))
    assert [p for p in problems if p[0] == "error"] == []


def test_check_model_names_the_faulty_node():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    node = helper.make_node("Softmax", ["x"], ["y"], name="soft", axis=1.5)
    model = make_model([node], [x], [y], opset=13)
    with pytest.raises(runnx.InvalidGraph, match="soft.*axis"):
        rt.check_model(model)
    assert any(p[0] == "error" for p in rt.check_model(model, raise_on_error=False))


@pytest.mark.parametrize("name", MODELS)
def test_infer_shapes_agrees_with_onnx(name):
    """Every value onnx's shape inference types gets the same element type and the same fixed
    and named dimensions from runnx (onnx-unknown dimensions accept anything)."""
    original = onnx.load(str(model_path(name)))
    del original.graph.value_info[:]
    theirs = onnx.shape_inference.infer_shapes(original)
    ours = onnx.load_from_string(rt.infer_shapes(original.SerializeToString()))
    onnx.checker.check_model(ours)

    def types(model):
        out = {}
        for vi in list(model.graph.value_info) + list(model.graph.output):
            t = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
            out[vi.name] = (t.elem_type, dims if t.HasField("shape") else None)
        return out

    ours_t = types(ours)
    compared = 0
    for value, (elem, dims) in types(theirs).items():
        assert value in ours_t, f"runnx did not type {value}"
        our_elem, our_dims = ours_t[value]
        assert our_elem == elem, value
        if dims is None:
            continue
        assert our_dims is not None and len(our_dims) == len(dims), value
        for d, o in zip(dims, our_dims):
            if d is not None and not (isinstance(d, str) and d.startswith("unk__")):
                assert o == d, f"{value}: runnx {our_dims}, onnx {dims}"
        compared += 1
    assert compared > 0


def test_infer_shapes_keeps_named_dims_through_computed_reshapes():
    ours = onnx.load_from_string(rt.infer_shapes(str(model_path("bert_tiny"))))
    shapes = {
        vi.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
        for vi in ours.graph.value_info
    }
    # BERT's attention reshapes its [batch, sequence, 128] activations into 2 heads of 64.
    assert ["batch", "sequence", 2, 64] in shapes.values()
    assert ["batch", 2, "sequence", "sequence"] in shapes.values()


@pytest.mark.parametrize("name", MODELS)
def test_optimized_model_gives_the_reference_outputs_in_onnxruntime(name):
    path = model_path(name)
    optimized = rt.optimize_model(path)
    model = onnx.load_from_string(optimized)
    onnx.checker.check_model(model, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node), "basic level: standard ops only"
    assert len(model.graph.node) <= len(onnx.load(str(path)).graph.node)
    inputs = load_npz(path.with_name(f"{name}.inputs.npz"))
    expected = load_npz(path.with_name(f"{name}.outputs.npz"))
    for out_name, got in ort_outputs(optimized, inputs).items():
        np.testing.assert_allclose(got, expected[out_name], rtol=1e-4, atol=1e-5, err_msg=out_name)


def test_optimize_folds_batchnorm_and_computed_shapes():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "scale"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]),
        helper.make_node("Shape", ["b"], ["s"]),
        helper.make_node("Reshape", ["b", "s"], ["y"]),
    ]
    model = make_model(nodes, [x], [y], opset=17, initializer=inits)
    optimized = rt.optimize_model(model)
    ops = [n.op_type for n in onnx.load_from_string(optimized).graph.node]
    assert ops == ["Conv", "Reshape"]
    feed = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(ort_outputs(optimized, feed)["y"], ort_outputs(model, feed)["y"], rtol=1e-4, atol=1e-5)


def test_print_and_parse_round_trip():
    path = model_path("mnist_cnn")
    for fmt in ("text", "prototxt", "json"):
        text = rt.print_model(path, fmt)
        back = onnx.load_from_string(rt.parse_model(text))
        assert [n.op_type for n in back.graph.node] == [n.op_type for n in onnx.load(str(path)).graph.node]
    with pytest.raises(runnx.InvalidArgument):
        rt.print_model(path, "yaml")


def test_export_weights_matches_onnx():
    path = model_path("mnist_mlp")
    ours = rt.export_weights(path)
    theirs = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value)


def test_diff_and_patch_weights_against_the_torch_state_dict():
    drifted = TORCH / "simplecnn_drifted.onnx"
    report = rt.diff_weights(drifted, TORCH / "simplecnn.prm")
    assert sorted(t["name"] for t in report["tensors"] if t["differs"]) == ["conv1.weight", "fc.3.bias"]
    patched = rt.patch_weights(drifted, TORCH / "simplecnn.prm")
    io = load_npz(TORCH / "simplecnn.io.npz")
    got = ort_outputs(patched, {"input": io["input"]})["output"]
    np.testing.assert_allclose(got, io["output"], rtol=0, atol=1e-5)
    # A dict of arrays works as weights too.
    fixed = rt.export_weights(TORCH / "simplecnn.onnx")
    assert not any(t["differs"] for t in rt.diff_weights(TORCH / "simplecnn.onnx", fixed)["tensors"])


def test_tools_refuse_a_missing_file_and_garbage():
    with pytest.raises(FileNotFoundError):
        rt.infer_shapes(Path("no/such/model.onnx"))
    with pytest.raises(runnx.InvalidProtobuf):
        rt.optimize_model(b"\x08\x07garbage")


def test_convert_opset_down_and_up_keeps_outputs_in_onnxruntime():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Squeeze", ["x", "axes"], ["s"]),
        helper.make_node("ReduceSum", ["s", "axes"], ["y"], keepdims=1),
    ]
    model = make_model(nodes, [x], [y], opset=13, ir_version=8, initializer=[axes])
    feed = {"x": np.arange(6, dtype=np.float32).reshape(2, 1, 3)}
    want = ort_outputs(model, feed)["y"]
    down = rt.convert_opset(model, 11)
    converted = onnx.load_from_string(down)
    assert converted.opset_import[0].version == 11
    assert {a.name for n in converted.graph.node for a in n.attribute} == {"axes", "keepdims"}
    np.testing.assert_array_equal(ort_outputs(down, feed)["y"], want)
    up = rt.convert_opset(down, 18)
    np.testing.assert_array_equal(ort_outputs(up, feed)["y"], want)
    with pytest.raises(runnx.InvalidArgument):
        rt.convert_opset(model, 999)
