"""Mirrors ``onnxruntime.capi._pybind_state``, which re-exports the compiled module's names."""

from .onnxruntime_pybind11_state import *  # noqa: F401,F403
from .onnxruntime_pybind11_state import Fail, InvalidArgument, NoSuchFile, RunnxError  # noqa: F401
