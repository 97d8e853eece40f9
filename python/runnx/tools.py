"""Model tools, the functions behind the ``runnx`` command line.

Each takes a model as a path, ``bytes`` or an ``onnx.ModelProto`` and returns results as plain
Python values; a model result is returned as ``bytes`` (``onnx.load_from_string`` reads it, and
so does ``runnx.InferenceSession``)::

    import runnx.tools as rt

    rt.check_model("model.onnx")                       # raises runnx.InvalidGraph when invalid
    with_shapes = rt.infer_shapes("model.onnx")        # like onnx.shape_inference.infer_shapes
    smaller = rt.optimize_model("model.onnx")          # constant/shape folding, Conv+BN folding
    print(rt.print_model("model.onnx"))                # the ONNX textual syntax
    weights = rt.export_weights("model.onnx")          # {name: numpy array}
    report = rt.diff_weights("model.onnx", "model.pt") # against a torch.save state_dict
    patched = rt.patch_weights("model.onnx", {"fc.bias": new_bias})
    opset13 = rt.convert_opset("model.onnx", 13)      # like onnx.version_converter
"""

from . import _runnx
from ._runnx import InvalidGraph


def _model(model):
    """A path or bytes, as the native functions take them (an onnx.ModelProto is serialised)."""
    serialize = getattr(model, "SerializeToString", None)
    if callable(serialize):
        return serialize()
    if isinstance(model, (bytearray, memoryview)):
        return bytes(model)
    return model


def check_model(model, raise_on_error=True):
    """Check a model like ``onnx.checker.check_model(model, full_check=True)``.

    Returns every problem as ``(severity, location, message)`` tuples, severity being
    ``"error"`` or ``"warning"``. With ``raise_on_error`` (the default), errors raise
    ``runnx.InvalidGraph`` listing them all.
    """
    problems = _runnx.tools_check_model(_model(model))
    errors = [p for p in problems if p[0] == "error"]
    if raise_on_error and errors:
        raise InvalidGraph("\n".join(f"{loc}: {msg}" for _, loc, msg in errors))
    return problems


def infer_shapes(model, strict=False):
    """Infer every value's type and shape and return the model with them as value_info (bytes).

    Named dimensions stay symbolic; shapes computed in the graph (Shape, Gather, Concat ...)
    are followed. With ``strict``, an invalid node, a type conflict or an op without a shape
    rule raises ``runnx.InvalidGraph``; otherwise those values are left as they were.
    """
    result, _problems = _runnx.tools_infer_shapes(_model(model), strict)
    return result


def optimize_model(model, level="basic"):
    """The model after runnx's graph optimizations (bytes).

    ``basic`` (the default) folds constants and computed shapes, folds BatchNormalization into
    Conv and removes dead nodes, in standard ONNX ops only. ``extended``/``all`` also fuse Conv
    with its residual Add and activation into com.microsoft.FusedConv.
    """
    return _runnx.tools_optimize_model(_model(model), level)


def print_model(model, format="text"):
    """The model as text: ``text`` (the ONNX textual syntax), ``prototxt`` or ``json``."""
    return _runnx.tools_print_model(_model(model), format)


def parse_model(text, format=None):
    """A model (bytes) parsed from any ``print_model`` format (guessed when ``format`` is None)."""
    return _runnx.tools_parse_model(text, format)


def export_weights(model):
    """The model's initializers as ``{name: numpy array}``, in model order."""
    return _runnx.tools_export_weights(_model(model))


def diff_weights(model, weights, rtol=1e-5, atol=1e-8):
    """Compare the model's initializers with ``weights``.

    ``weights`` is a path (.npz, .safetensors, or a PyTorch state_dict written by torch.save)
    or a dict of arrays; names like ``conv1.weight`` are matched to initializers. Returns
    ``{"tensors": [...], "missing_in_model": [...], "missing_in_weights": [...]}``, each tensor
    a dict with ``name``, ``weight``, ``status`` ("matches", "differs", "shape mismatch",
    "type mismatch"), ``differs`` and, when compared, ``max_abs_diff``, ``max_rel_diff``,
    ``mismatches`` (elements outside rtol/atol) and ``count``.
    """
    return _runnx.tools_diff_weights(_model(model), weights, rtol, atol)


def patch_weights(model, weights):
    """The model (bytes) with every initializer that has a same-named weight replaced.

    Shapes must match; values are converted to the initializer's element type.
    """
    return _runnx.tools_patch_weights(_model(model), weights)


def convert_opset(model, target):
    """The model (bytes) converted to opset ``target`` of the default ONNX domain, up or down,
    like ``onnx.version_converter.convert_version``. A node the target opset cannot express
    raises ``runnx.NotImplemented`` naming it."""
    return _runnx.tools_convert_opset(_model(model), target)
