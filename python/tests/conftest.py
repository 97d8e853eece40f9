"""Shared helpers: model locations and tiny models built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# The large benchmark models are not in the repository; they sit beside it.
BENCH = REPO.parent / "shared" / "bench" / "models"


def model_path(name: str) -> Path:
    """The path of benchmark model `name`: the repository's fixtures, else ../shared; skips the
    test, loudly, when neither has it."""
    for folder in (FIXTURES, BENCH):
        path = folder / f"{name}.onnx"
        if path.exists():
            return path
    pytest.skip(f"!!!!!!!! SKIPPED: {name}.onnx is in neither {FIXTURES} nor {BENCH} !!!!!!!!")


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture
def onnx_helper():
    onnx = pytest.importorskip("onnx")
    return onnx.helper


def make_model(nodes, inputs, outputs, opset: int = 21, ir_version: int = 10, **kwargs) -> bytes:
    """A serialized model of `nodes` (onnx.helper value infos for inputs and outputs)."""
    from onnx import helper

    graph = helper.make_graph(nodes, kwargs.pop("graph_name", "test"), inputs, outputs, **kwargs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def identity_model(elem_type: int, shape=None) -> bytes:
    """y = Identity(x) for tensors of `elem_type` (an onnx.TensorProto code)."""
    from onnx import helper

    return make_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
    )


