"""onnxruntime's session API over ``runnx._runnx.Session``.

The classes and functions here mirror ``onnxruntime`` (1.32) closely enough that
``import runnx as onnxruntime`` runs existing inference code: ``InferenceSession``,
``SessionOptions``, ``RunOptions``, ``GraphOptimizationLevel``, ``ExecutionMode``, ``NodeArg``,
``ModelMetadata`` and the provider functions. Everything runs on the CPU.
"""

from __future__ import annotations

import collections.abc
import enum
import os
import warnings
from typing import Any, Sequence

from . import _runnx

CPU_PROVIDER = "CPUExecutionProvider"

# onnxruntime lists every provider it knows of; runnx knows CUDA by name (so that code asking for
# it gets a warning and the CPU rather than an error) and runs on the CPU only.
_ALL_PROVIDERS = ["CUDAExecutionProvider", CPU_PROVIDER]
_AVAILABLE_PROVIDERS = [CPU_PROVIDER]


def get_all_providers() -> list[str]:
    """Every execution provider runnx knows of (whether or not it is available)."""
    return list(_ALL_PROVIDERS)


def get_available_providers() -> list[str]:
    """The execution providers this build can run: the CPU."""
    return list(_AVAILABLE_PROVIDERS)


def get_device() -> str:
    """The device runnx runs on."""
    return "CPU"


def get_version_string() -> str:
    return _runnx.__version__


def get_build_info() -> str:
    return f"runnx {_runnx.__version__} (CPU)"


def set_default_logger_severity(severity: int) -> None:
    """Accepted for compatibility; runnx does not log."""


def set_default_logger_verbosity(verbosity: int) -> None:
    """Accepted for compatibility; runnx does not log."""


class _OrtEnum(enum.IntEnum):
    # onnxruntime's enums print as `GraphOptimizationLevel.ORT_ENABLE_ALL` and compare with ints.
    __str__ = enum.Enum.__str__


class GraphOptimizationLevel(_OrtEnum):
    """How much the graph is rewritten before it runs (onnxruntime's levels and values)."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(_OrtEnum):
    """Accepted for compatibility; runnx runs nodes in order and parallelises inside them."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(_OrtEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class SessionOptions:
    """Options for creating a session.

    runnx uses ``intra_op_num_threads`` (0: one thread per core) and
    ``graph_optimization_level``; the others are accepted and kept so that code setting them
    runs unchanged.
    """

    def __init__(self) -> None:
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.optimized_model_filepath = ""
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self._config_entries: dict[str, str] = {}
        self._free_dimension_overrides: dict[str, int] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config_entries[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        try:
            return self._config_entries[key]
        except KeyError:
            raise _runnx.InvalidArgument(f"session config entry '{key}' is not set") from None

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        """Accepted; runnx handles symbolic dimensions at run time without specialising."""
        self._free_dimension_overrides[dim_name] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        """Accepted; runnx handles symbolic dimensions at run time without specialising."""

    def add_initializer(self, name: str, value: Any) -> None:
        raise NotImplementedError("runnx does not support SessionOptions.add_initializer")

    def register_custom_ops_library(self, library_path: str) -> None:
        raise NotImplementedError("runnx does not load custom op libraries (onnxruntime's C++ ABI)")

    def __repr__(self) -> str:
        return (
            f"SessionOptions(intra_op_num_threads={self.intra_op_num_threads}, "
            f"graph_optimization_level={self.graph_optimization_level!s})"
        )


class RunOptions:
    """Options for one ``run`` call; accepted for compatibility and otherwise ignored."""

    def __init__(self) -> None:
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False
        self._config_entries: dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config_entries[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        try:
            return self._config_entries[key]
        except KeyError:
            raise _runnx.InvalidArgument(f"run config entry '{key}' is not set") from None


class NodeArg:
    """A graph input or output: ``name``, ``type`` ("tensor(float)", "seq(tensor(int64))"...)
    and ``shape`` (ints for fixed dimensions, strings for named ones, None for unknown ones)."""

    __slots__ = ("name", "type", "shape")

    def __init__(self, name: str, type: str, shape: list) -> None:
        self.name = name
        self.type = type
        self.shape = shape

    def __str__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"

    __repr__ = __str__


class ModelMetadata:
    """The model's metadata, with onnxruntime's attribute names."""

    def __init__(self, fields: dict) -> None:
        self.producer_name: str = fields["producer_name"]
        self.graph_name: str = fields["graph_name"]
        self.domain: str = fields["domain"]
        self.description: str = fields["description"]
        self.graph_description: str = fields["graph_description"]
        self.version: int = fields["version"]
        self.custom_metadata_map: dict[str, str] = fields["custom_metadata_map"]

    def __repr__(self) -> str:
        return (
            f"ModelMetadata(producer_name={self.producer_name!r}, graph_name={self.graph_name!r}, "
            f"domain={self.domain!r}, version={self.version}, "
            f"custom_metadata_map={self.custom_metadata_map!r})"
        )


def _normalize_providers(
    providers: Sequence[str | tuple[str, dict]] | None,
    provider_options: Sequence[dict] | None,
) -> tuple[list[str], list[dict[str, str]]]:
    """Validates providers like onnxruntime and keeps the CPU: an unavailable provider (CUDA,
    or a name runnx does not know) gets a warning and the session falls back to the CPU."""
    if providers is None:
        return [CPU_PROVIDER], [{}]
    if isinstance(providers, str) or not isinstance(providers, collections.abc.Sequence):
        raise ValueError("'providers' should be a sequence.")
    pairs: list[tuple[str, dict]] = []
    if provider_options is not None:
        if not isinstance(provider_options, collections.abc.Sequence):
            raise ValueError("'provider_options' should be a sequence.")
        if len(providers) != len(provider_options):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise ValueError("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, dict) for o in provider_options):
            raise ValueError("'provider_options' values must be dicts.")
        pairs = list(zip(providers, provider_options))
    else:
        for p in providers:
            if isinstance(p, str):
                pairs.append((p, {}))
            elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict):
                pairs.append((p[0], p[1]))
            else:
                raise ValueError("'providers' values must be either strings or (string, dict) tuples.")
    cpu_options: dict[str, str] = {}
    for name, options in pairs:
        if name == CPU_PROVIDER:
            cpu_options = {str(k): str(v) for k, v in options.items()}
        elif name in _ALL_PROVIDERS:
            warnings.warn(
                f"Specified provider '{name}' is not in available provider names."
                f"Available providers: '{', '.join(_AVAILABLE_PROVIDERS)}'. runnx runs on the CPU.",
                stacklevel=3,
            )
        else:
            warnings.warn(
                f"Unknown provider '{name}' (runnx knows {', '.join(_ALL_PROVIDERS)}); "
                f"falling back to {CPU_PROVIDER}.",
                stacklevel=3,
            )
    return [CPU_PROVIDER], [cpu_options]


class InferenceSession:
    """A model loaded and planned for running on the CPU.

    ``path_or_bytes`` is a path (str or os.PathLike) or the serialized model. ``providers``
    may name onnxruntime providers; runnx runs everything on ``CPUExecutionProvider`` and warns
    about the others.
    """

    def __init__(
        self,
        path_or_bytes: str | bytes | os.PathLike,
        sess_options: SessionOptions | None = None,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        provider_options: Sequence[dict] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self._model_path = None
            model: Any = bytes(path_or_bytes)
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            self._model_path = os.fspath(path_or_bytes)
            model = self._model_path
        else:
            raise TypeError(f"Unable to load from type '{type(path_or_bytes)}'")
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._providers, self._provider_options = _normalize_providers(providers, provider_options)
        self._sess = _runnx.Session(
            model,
            int(self._sess_options.intra_op_num_threads),
            int(self._sess_options.graph_optimization_level),
            self._sess_options.optimized_model_filepath or None,
        )
        self._inputs = [NodeArg(*a) for a in self._sess.inputs()]
        self._outputs = [NodeArg(*a) for a in self._sess.outputs()]
        self._overridable_initializers = [NodeArg(*a) for a in self._sess.overridable_initializers()]
        self._metadata = ModelMetadata(self._sess.metadata())

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any], run_options: RunOptions | None = None) -> list:
        """Runs the model on ``input_feed`` (input name -> numpy array, list for a sequence,
        dict for a map, None for an empty optional) and returns the outputs named in
        ``output_names`` (every output when None or empty), in that order."""
        return self._sess.run(output_names, input_feed, run_options)

    def get_inputs(self) -> list[NodeArg]:
        """The inputs a caller feeds (graph inputs that are not initializers)."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Initializers that are also listed as graph inputs. (runnx does not let a feed
        replace them: feeding one raises.)"""
        return list(self._overridable_initializers)

    def get_modelmeta(self) -> ModelMetadata:
        return self._metadata

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {name: dict(options) for name, options in zip(self._providers, self._provider_options)}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def set_providers(self, providers: Sequence[str | tuple[str, dict]] | None = None, provider_options: Sequence[dict] | None = None) -> None:
        """Validates the providers like the constructor; the session keeps running on the CPU."""
        self._providers, self._provider_options = _normalize_providers(providers, provider_options)

    def disable_fallback(self) -> None:
        """Accepted for compatibility (there is nothing to fall back from)."""

    def enable_fallback(self) -> None:
        """Accepted for compatibility (there is nothing to fall back from)."""

    def end_profiling(self) -> str:
        """runnx does not profile; returns an empty file name."""
        return ""

    def get_profiling_start_time_ns(self) -> int:
        return 0

    def __repr__(self) -> str:
        source = getattr(self, "_model_path", None) or "<bytes>"
        inputs = [i.name for i in getattr(self, "_inputs", [])]
        outputs = [o.name for o in getattr(self, "_outputs", [])]
        return f"InferenceSession({source!r}, inputs={inputs}, outputs={outputs})"
