"""The benchmark models give onnxruntime's reference outputs (rtol 1e-4, atol 1e-5), at batch 1
and at batch 8 (the inputs repeated along axis 0).

mnist_mlp and mnist_cnn are fixtures in the repository; resnet18 (45 MB) and bert_tiny (17 MB)
are read from ../shared/bench/models and skipped, loudly, when it is not there."""

from __future__ import annotations

import numpy as np
import pytest

import runnx

from conftest import load_npz, model_path

MODELS = ["mnist_mlp", "mnist_cnn", "resnet18", "bert_tiny"]


@pytest.fixture(scope="module", params=MODELS)
def bench_model(request):
    path = model_path(request.param)
    so = runnx.SessionOptions()
    so.intra_op_num_threads = 2
    sess = runnx.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inputs = load_npz(path.with_name(f"{request.param}.inputs.npz"))
    outputs = load_npz(path.with_name(f"{request.param}.outputs.npz"))
    return sess, inputs, outputs


@pytest.mark.parametrize("batch", [1, 8])
def test_bench_model(bench_model, batch):
    sess, inputs, expected = bench_model
    assert sorted(i.name for i in sess.get_inputs()) == sorted(inputs)
    feed = {name: np.repeat(x, batch, axis=0) for name, x in inputs.items()}
    names = [o.name for o in sess.get_outputs()]
    outputs = sess.run(None, feed)
    assert len(outputs) == len(names)
    for name, got in zip(names, outputs):
        want = np.repeat(expected[name], batch, axis=0)
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # Named outputs give the same values.
    for name, got in zip(names, sess.run(names[::-1], feed)[::-1]):
        np.testing.assert_allclose(got, np.repeat(expected[name], batch, axis=0), rtol=1e-4, atol=1e-5)


def test_mlp_signature_matches_onnxruntime():
    sess = runnx.InferenceSession(str(model_path("mnist_mlp")))
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("flatten_input", "tensor(float)", ["batch", 28, 28])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"])
def test_optimized_model_file_runs_in_onnxruntime(tmp_path, name, level):
    """Every optimization level keeps the reference outputs, and the optimized graph runnx saves
    (fused nodes included) is a model onnxruntime loads and runs to the same outputs."""
    onnxruntime = pytest.importorskip("onnxruntime")
    path = model_path(name)
    saved = tmp_path / f"{name}.optimized.onnx"
    so = runnx.SessionOptions()
    so.graph_optimization_level = getattr(runnx.GraphOptimizationLevel, level)
    so.optimized_model_filepath = str(saved)
    sess = runnx.InferenceSession(str(path), so)
    inputs = load_npz(path.with_name(f"{name}.inputs.npz"))
    expected = load_npz(path.with_name(f"{name}.outputs.npz"))
    ort_options = onnxruntime.SessionOptions()
    ort_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    reloaded = onnxruntime.InferenceSession(str(saved), ort_options, providers=["CPUExecutionProvider"])
    for engine in (sess, reloaded):
        names = [o.name for o in engine.get_outputs()]
        for out_name, got in zip(names, engine.run(None, inputs)):
            np.testing.assert_allclose(got, expected[out_name], rtol=1e-4, atol=1e-5, err_msg=out_name)
