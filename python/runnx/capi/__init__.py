"""Mirrors ``onnxruntime.capi`` for code that imports names from there."""
