"""runnx: an ONNX inference engine with onnxruntime's Python API.

``import runnx as onnxruntime`` runs existing onnxruntime inference code on the CPU::

    import numpy as np
    import runnx as ort

    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outputs = sess.run(None, {name: np.zeros((1, 28, 28), np.float32)})

``runnx.backend`` implements onnx's backend interface (``runnx.backend.prepare(model).run(x)``).
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

__version__ = _runnx.__version__
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
    "get_all_providers",
    "get_available_providers",
    "get_build_info",
    "get_device",
    "get_version_string",
    "set_default_logger_severity",
    "set_default_logger_verbosity",
]
