"""runnx: an ONNX inference engine with onnxruntime's Python API.

``import runnx as onnxruntime`` runs existing onnxruntime inference code on the CPU::

    import numpy as np
    import runnx as ort

    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outputs = sess.run(None, {name: np.zeros((1, 28, 28), np.float32)})

``runnx.backend`` implements onnx's backend interface (``runnx.backend.prepare(model).run(x)``).
``runnx.convert_keras(path)`` converts a Keras model (.h5 or .keras) to ONNX and returns the
model's bytes, without TensorFlow::

    onnx_bytes = runnx.convert_keras("model.keras")
    sess = ort.InferenceSession(onnx_bytes)

``runnx.tools`` holds the model tools of the command line (check_model, infer_shapes,
optimize_model, print_model/parse_model, export_weights/diff_weights/patch_weights,
convert_opset).

Errors are ``runnx.RunnxError`` subclasses named like onnxruntime's (``InvalidArgument``,
``Fail``, ``NoSuchFile``, ``InvalidProtobuf``...), also importable from
``runnx.capi.onnxruntime_pybind11_state``.
"""

from . import _runnx
from ._runnx import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    RunnxError,
    RuntimeException,
)
from .session import (
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    InferenceSession,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
    get_all_providers,
    get_available_providers,
    get_build_info,
    get_device,
    get_version_string,
    set_default_logger_severity,
    set_default_logger_verbosity,
)

from . import tools

__version__ = _runnx.__version__


def convert_keras(path, opset=None, inputs_as_nchw=None):
    """Convert a Keras model (.h5 from Keras 2 or 3, or a Keras 3 .keras file) to ONNX.

    Returns the serialised ONNX model (``bytes``). ``opset`` picks the ONNX opset (default 17);
    ``inputs_as_nchw`` lists inputs to declare channels-first instead of Keras's channels-last.
    An unsupported layer or setting raises ``runnx.NotImplemented`` naming the layer, its class
    and the setting; an unreadable file ``runnx.InvalidArgument`` or ``runnx.NoSuchFile``.
    """
    import os

    return _runnx.convert_keras(os.fspath(path), opset, list(inputs_as_nchw or []))


version = __version__
package_name = "runnx"

__all__ = [
    "ExecutionMode",
    "ExecutionOrder",
    "Fail",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "ModelMetadata",
    "NoSuchFile",
    "NodeArg",
    "NotImplemented",
    "RunOptions",
    "RunnxError",
    "RuntimeException",
    "SessionOptions",
    "__version__",
    "convert_keras",
    "get_all_providers",
    "get_available_providers",
    "get_build_info",
    "get_device",
    "get_version_string",
    "set_default_logger_severity",
    "set_default_logger_verbosity",
]
