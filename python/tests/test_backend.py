"""runnx.backend: onnx's backend interface."""

from __future__ import annotations

import numpy as np
import pytest

import runnx
import runnx.backend as backend

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper  # noqa: E402

from conftest import load_npz, make_model, model_path  # noqa: E402


def add_model() -> onnx.ModelProto:
    """z = x + y with a constant initializer c: z2 = x * c."""
    c = helper.make_tensor("c", TP.FLOAT, [2], [2.0, 3.0])
    return onnx.load_from_string(
        make_model(
            [helper.make_node("Add", ["x", "y"], ["z"]), helper.make_node("Mul", ["x", "c"], ["z2"])],
            [helper.make_tensor_value_info("x", TP.FLOAT, [2]), helper.make_tensor_value_info("y", TP.FLOAT, [2])],
            [helper.make_tensor_value_info("z", TP.FLOAT, [2]), helper.make_tensor_value_info("z2", TP.FLOAT, [2])],
            initializer=[c],
        )
    )


def test_is_an_onnx_backend():
    from onnx.backend.base import Backend, BackendRep

    assert issubclass(backend.RunnxBackend, Backend)
    assert issubclass(backend.BackendRep, BackendRep)
    assert backend.supports_device("CPU")
    assert not backend.supports_device("CUDA")


def test_prepare_accepts_proto_bytes_and_path(tmp_path):
    model = add_model()
    path = tmp_path / "add.onnx"
    path.write_bytes(model.SerializeToString())
    x, y = np.array([1, 2], np.float32), np.array([10, 20], np.float32)
    for source in (model, model.SerializeToString(), str(path), path):
        rep = backend.prepare(source)
        out = rep.run([x, y])
        np.testing.assert_array_equal(out[0], x + y)
        np.testing.assert_array_equal(out["z2"], x * [2, 3])
        np.testing.assert_array_equal(out.z, x + y)
        np.testing.assert_array_equal(rep.run((x, y))[0], x + y)
        np.testing.assert_array_equal(rep.run({"x": x, "y": y})[1], x * [2, 3])
    np.testing.assert_array_equal(backend.run_model(model, [x, y])[0], x + y)
    with pytest.raises(RuntimeError, match="device"):
        backend.prepare(model, device="CUDA")


def test_prepare_sets_session_options():
    rep = backend.prepare(add_model(), intra_op_num_threads=1)
    assert rep.session._sess.threads == 1


def test_single_array_for_a_one_input_model():
    path = model_path("mnist_mlp")
    inputs = load_npz(path.with_name("mnist_mlp.inputs.npz"))
    outputs = load_npz(path.with_name("mnist_mlp.outputs.npz"))
    rep = backend.prepare(onnx.load(str(path)))
    (probs,) = rep.run(inputs["flatten_input"])
    np.testing.assert_allclose(probs, outputs["probs"], rtol=1e-4, atol=1e-5)


def test_run_node():
    x = np.array([[1, -2], [3, -4]], np.float32)
    (y,) = backend.run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    out = backend.run_node(helper.make_node("Add", ["a", "b"], ["c"]), [x, x])
    np.testing.assert_array_equal(out["c"], 2 * x)
    (t,) = backend.run_node(helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]), [x], outputs_info=[(np.float32, (2, 2))])
    np.testing.assert_array_equal(t, x.T)
    (s,) = backend.run_node(helper.make_node("Identity", ["s"], ["o"]), [np.array(["a", "b"])])
    assert s.tolist() == ["a", "b"]


def test_import_without_onnx():
    # `import runnx` must not need onnx.
    import subprocess
    import sys

    code = "import sys; sys.modules['onnx'] = None; import runnx, runnx.backend; print(runnx.get_device())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "CPU", result.stderr
    assert runnx.backend is backend
