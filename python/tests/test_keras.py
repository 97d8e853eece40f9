"""runnx.convert_keras on the Keras fixtures in tests/data/keras, from .h5 and from .keras: the
ONNX model passes onnx.checker (full_check) and, run by onnxruntime and by runnx on NAME.io.npz's
inputs (x0, x1), reproduces Keras's outputs (y0, y1) within rtol 1e-4, atol 1e-5. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

import runnx

from conftest import REPO, load_npz

KERAS = REPO / "tests" / "data" / "keras"
MODELS = sorted(p.stem for p in KERAS.glob("*.keras"))
TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def feeds_for(sess, io):
    # Keras casts inputs to the model's dtype; the fixtures store token ids as int32.
    return {i.name: io[f"x{k}"].astype(TYPES[i.type]) for k, i in enumerate(sess.get_inputs())}


def max_errors(outputs, io):
    errors = []
    for k, got in enumerate(outputs):
        want = io[f"y{k}"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        errors.append(float(np.max(np.abs(got - want))))
    return errors


def test_fixture_count():
    assert len(MODELS) == 11


@pytest.mark.parametrize("ext", ["h5", "keras"])
@pytest.mark.parametrize("name", MODELS)
def test_converted_model_matches_keras(name, ext):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    data = runnx.convert_keras(KERAS / f"{name}.{ext}")
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    io = load_npz(KERAS / f"{name}.io.npz")

    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ort_errors = max_errors(ref.run(None, feeds_for(ref, io)), io)
    sess = runnx.InferenceSession(data, providers=["CPUExecutionProvider"])
    runnx_errors = max_errors(sess.run(None, feeds_for(sess, io)), io)
    print(f"{name}.{ext}: max abs error onnxruntime {ort_errors}, runnx {runnx_errors}")


def test_names_and_dynamic_batch():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(runnx.convert_keras(KERAS / "two_inputs_two_outputs.keras"))
    assert [i.name for i in model.graph.input] == ["a", "b"]
    assert [o.name for o in model.graph.output] == ["dense_16", "multiply"]
    for v in list(model.graph.input) + list(model.graph.output):
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_opset_is_honoured():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(runnx.convert_keras(KERAS / "attention_block.h5", opset=21))
    assert [o.version for o in model.opset_import] == [21]
    onnx.checker.check_model(model, full_check=True)


def test_errors():
    with pytest.raises(runnx.NoSuchFile):
        runnx.convert_keras(KERAS / "missing.keras")
    with pytest.raises(runnx.InvalidArgument, match="opset 7"):
        runnx.convert_keras(KERAS / "lstm.keras", opset=7)
    with pytest.raises(runnx.InvalidArgument, match="config.json"):
        runnx.convert_keras(KERAS / "lstm.io.npz")
