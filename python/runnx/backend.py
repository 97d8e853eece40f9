"""onnx's backend interface (``onnx.backend.base.Backend``) over runnx, like
``onnxruntime.backend``::

    import runnx.backend as backend
    rep = backend.prepare(model)          # ModelProto, bytes or a path
    outputs = rep.run([x])                # or rep.run(x), or rep.run({"input": x})
    outputs["probs"], outputs[0]          # by name or position

onnx is optional: without it ``prepare``, ``run_model`` and ``supports_device`` work on bytes
and paths; ``run_node`` and ModelProto arguments need onnx.
"""

from __future__ import annotations

import os
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from .session import InferenceSession, SessionOptions, get_device

try:  # onnx is optional
    import onnx
    from onnx.backend.base import Backend as _BackendBase
    from onnx.backend.base import BackendRep as _BackendRepBase
except ImportError:  # pragma: no cover - exercised only without onnx
    onnx = None
    _BackendBase = object
    _BackendRepBase = object

# SessionOptions attributes `prepare(model, **kwargs)` sets (as onnxruntime.backend allows).
_SESSION_OPTIONS = frozenset(
    {
        "enable_cpu_mem_arena",
        "enable_mem_pattern",
        "enable_mem_reuse",
        "execution_mode",
        "execution_order",
        "graph_optimization_level",
        "inter_op_num_threads",
        "intra_op_num_threads",
        "log_severity_level",
        "log_verbosity_level",
        "logid",
        "use_deterministic_compute",
        "use_per_session_threads",
    }
)


def namedtupledict(typename: str, field_names: Sequence[str]) -> type:
    """A namedtuple that can also be indexed by field name (output names need not be Python
    identifiers); the same as ``onnx.backend.base.namedtupledict``."""
    index = {n: i for i, n in enumerate(field_names)}
    base = namedtuple(typename, field_names, rename=True)  # noqa: PYI024

    def getitem(self: Any, key: Any) -> Any:
        if isinstance(key, str):
            key = index[key]
        return tuple.__getitem__(self, key)

    return type(typename, (base,), {"__getitem__": getitem, "__slots__": ()})


class BackendRep(_BackendRepBase):
    """A prepared model: ``run(inputs)`` returns the outputs as a namedtuple-like list."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]
        self._result_type = namedtupledict("Outputs", self._outputs)

    def run(self, inputs: Any, **kwargs: Any) -> tuple:
        """``inputs``: a list or tuple with one value per graph input (those that are not
        initializers), in order; a dict by input name; or a single array for a one-input model."""
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) > len(self._inputs):
                raise ValueError(f"the model has {len(self._inputs)} inputs ({', '.join(self._inputs)}), got {len(inputs)} values")
            feed = {name: _as_feed(v) for name, v in zip(self._inputs, inputs)}
        else:
            if len(self._inputs) != 1:
                raise ValueError(f"the model has {len(self._inputs)} inputs ({', '.join(self._inputs)}): pass a list or a dict")
            feed = {self._inputs[0]: _as_feed(inputs)}
        return self._result_type(*self.session.run(None, feed))


def _as_feed(value: Any) -> Any:
    # numpy scalars (np.float32(1)) become 0-d arrays; lists stay lists (sequence inputs).
    return np.asarray(value) if isinstance(value, np.generic) else value


def _model_bytes(model: Any) -> bytes | str:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise TypeError(f"cannot prepare a model from {type(model).__name__}: pass a ModelProto, bytes or a path")


class RunnxBackend(_BackendBase):
    """runnx as an onnx backend (CPU only)."""

    @classmethod
    def is_compatible(cls, model: Any, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper() == get_device()

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> BackendRep:
        """A ``BackendRep`` for ``model`` (ModelProto, bytes, a path, or an InferenceSession).
        ``kwargs`` may set SessionOptions attributes (``intra_op_num_threads``...)."""
        if device is not None and not cls.supports_device(device):
            raise RuntimeError(f"Incompatible device expected '{device}', got '{get_device()}'")
        if isinstance(model, BackendRep):
            return model
        if isinstance(model, InferenceSession):
            return BackendRep(model)
        options = SessionOptions()
        for key, value in kwargs.items():
            if key in _SESSION_OPTIONS:
                setattr(options, key, value)
        return BackendRep(InferenceSession(_model_bytes(model), sess_options=options))

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: Any,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[Any, Sequence[int]]] | None = None,
        **kwargs: Any,
    ) -> tuple:
        """Runs one NodeProto on ``inputs`` (a list matching ``node.input``, or a dict by
        name) by wrapping it in a one-node model. ``opset_version`` picks the default domain's
        opset (onnx's latest otherwise)."""
        if onnx is None:
            raise ImportError("runnx.backend.run_node builds a model with onnx.helper: install onnx")
        from onnx import helper

        names = [n for n in node.input if n]
        if isinstance(inputs, dict):
            feed = {n: inputs[n] for n in names}
        else:
            inputs = list(inputs)
            if len(inputs) != len(names):
                raise ValueError(f"node {node.op_type} has {len(names)} inputs ({', '.join(names)}), got {len(inputs)} values")
            feed = dict(zip(names, inputs))
        feed = {n: _as_feed(v) for n, v in feed.items()}
        graph_inputs = [_value_info(n, v) for n, v in feed.items()]
        outputs = [n for n in node.output if n]
        graph_outputs = []
        for i, name in enumerate(outputs):
            if outputs_info is not None and i < len(outputs_info):
                dtype, shape = outputs_info[i]
                elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
                graph_outputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
            else:
                graph_outputs.append(helper.make_empty_tensor_value_info(name))
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        opsets = [helper.make_opsetid("", opset)]
        if node.domain not in ("", "ai.onnx"):
            opsets.append(helper.make_opsetid(node.domain, 1))
        graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
        model = helper.make_model(graph, opset_imports=opsets, producer_name="runnx.backend.run_node")
        rep = cls.prepare(model, device, **kwargs)
        return rep.run(feed)


def _value_info(name: str, value: Any) -> Any:
    from onnx import helper

    if value is None:
        return helper.make_value_info(name, onnx.TypeProto())
    if isinstance(value, (list, tuple)):
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(value[0]).dtype) if value else onnx.TensorProto.FLOAT
        return helper.make_tensor_sequence_value_info(name, elem, None)
    array = np.asarray(value)
    if array.dtype.kind in "UO":
        elem = onnx.TensorProto.STRING
    else:
        elem = helper.np_dtype_to_tensor_dtype(array.dtype)
    return helper.make_tensor_value_info(name, elem, list(array.shape))


is_compatible = RunnxBackend.is_compatible
prepare = RunnxBackend.prepare
run = RunnxBackend.run_model
run_model = RunnxBackend.run_model
run_node = RunnxBackend.run_node
supports_device = RunnxBackend.supports_device
