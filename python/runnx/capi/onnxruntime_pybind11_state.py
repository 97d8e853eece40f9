"""The names onnxruntime code imports from ``onnxruntime.capi.onnxruntime_pybind11_state``:
the exception classes (``InvalidArgument``, ``Fail``...) and the session types."""

from .._runnx import (  # noqa: F401
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
    NotImplemented,
    RunnxError,
    RuntimeException,
)
from ..session import (  # noqa: F401
    ExecutionMode,
    ExecutionOrder,
    GraphOptimizationLevel,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
    get_all_providers,
    get_available_providers,
    get_device,
)
