"""Every ONNX element type goes in and comes back out unchanged through an Identity model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import runnx

onnx = pytest.importorskip("onnx")
ml_dtypes = pytest.importorskip("ml_dtypes")
from onnx import TensorProto as TP  # noqa: E402

from conftest import identity_model  # noqa: E402

# (ONNX element type, numpy dtype, sample values). The samples include each type's extremes and,
# for the float types, NaN, infinity or negative zero where the type has them.
NUMERIC = [
    (TP.FLOAT, np.float32, [0.0, -0.0, 1.5, np.inf, -np.inf, np.nan, 3.4e38, 1e-45]),
    (TP.DOUBLE, np.float64, [0.0, -0.0, 1.5, np.inf, np.nan, 1.7e308, 5e-324]),
    (TP.FLOAT16, np.float16, [0.0, -0.0, 1.5, np.inf, np.nan, 65504.0, 6e-8]),
    (TP.INT8, np.int8, [-128, -1, 0, 1, 127]),
    (TP.INT16, np.int16, [-32768, -1, 0, 32767]),
    (TP.INT32, np.int32, [-(2**31), -1, 0, 2**31 - 1]),
    (TP.INT64, np.int64, [-(2**63), -1, 0, 2**63 - 1]),
    (TP.UINT8, np.uint8, [0, 1, 255]),
    (TP.UINT16, np.uint16, [0, 1, 65535]),
    (TP.UINT32, np.uint32, [0, 1, 2**32 - 1]),
    (TP.UINT64, np.uint64, [0, 1, 2**64 - 1]),
    (TP.BOOL, np.bool_, [True, False, True]),
    (TP.COMPLEX64, np.complex64, [0, 1 + 2j, -3.5 - 0.25j, complex(np.inf, np.nan)]),
    (TP.COMPLEX128, np.complex128, [0, 1 + 2j, -3.5e300 - 0.25j]),
]

ML_DTYPES = [
    (TP.BFLOAT16, "bfloat16", [0.0, -0.0, 1.5, -2.0, np.inf, np.nan, 3.0e38]),
    (TP.FLOAT8E4M3FN, "float8_e4m3fn", [0.0, -0.0, 1.5, -448.0, 448.0, np.nan, 0.001953125]),
    (TP.FLOAT8E4M3FNUZ, "float8_e4m3fnuz", [0.0, 1.5, -240.0, 240.0, np.nan]),
    (TP.FLOAT8E5M2, "float8_e5m2", [0.0, -0.0, 1.5, -57344.0, np.inf, -np.inf, np.nan]),
    (TP.FLOAT8E5M2FNUZ, "float8_e5m2fnuz", [0.0, 1.5, -57344.0, np.nan]),
    (TP.FLOAT8E8M0, "float8_e8m0fnu", [1.0, 2.0**-127, 2.0**127, 0.5, np.nan]),
    (TP.FLOAT4E2M1, "float4_e2m1fn", [0.0, -0.0, 0.5, -6.0, 6.0, 1.5]),
    (TP.INT4, "int4", [-8, -1, 0, 1, 7]),
    (TP.UINT4, "uint4", [0, 1, 9, 15]),
    (TP.INT2, "int2", [-2, -1, 0, 1]),
    (TP.UINT2, "uint2", [0, 1, 2, 3]),
]


def round_trip(elem_type: int, array: np.ndarray):
    sess = runnx.InferenceSession(identity_model(elem_type))
    onnx_name = onnx.TensorProto.DataType.Name(elem_type).lower()
    assert sess.get_inputs()[0].type == f"tensor({onnx_name})"
    (out,) = sess.run(None, {"x": array})
    return out


def assert_same_bits(out: np.ndarray, expected: np.ndarray):
    assert out.dtype == expected.dtype, (out.dtype, expected.dtype)
    assert out.shape == expected.shape
    assert out.tobytes() == expected.tobytes(), (out, expected)


@pytest.mark.parametrize("elem_type, dtype, values", NUMERIC, ids=lambda v: getattr(v, "__name__", None))
def test_numeric_round_trip(elem_type, dtype, values):
    x = np.array(values, dtype=dtype)
    for array in (x, x.reshape(1, -1, 1), np.array(x[0]), x[:0]):
        assert_same_bits(round_trip(elem_type, array), array)


@pytest.mark.parametrize("elem_type, name, values", ML_DTYPES, ids=[n for _, n, _ in ML_DTYPES])
def test_ml_dtypes_round_trip(elem_type, name, values):
    dtype = np.dtype(getattr(ml_dtypes, name))
    x = np.array(values, dtype=dtype)
    for array in (x, x.reshape(-1, 1), x[::-1], x[:0]):
        out = round_trip(elem_type, array)
        assert out.dtype == dtype, (out.dtype, dtype)
        assert_same_bits(out, np.ascontiguousarray(array))


def test_string_round_trip():
    expected = ["", "a", "héllo wörld", "日本語", "emoji 🎉", "x" * 1000]
    sources = [
        np.array(expected),  # <U
        np.array(expected, dtype=object),  # str objects
        np.array([s.encode() for s in expected], dtype=object),  # bytes objects
        np.array([s.encode() for s in expected]),  # |S
        np.array(expected).reshape(2, 3).T,  # non-contiguous
    ]
    for source in sources:
        out = round_trip(TP.STRING, source)
        assert out.dtype == object
        assert out.shape == source.shape
        assert all(type(v) is str for v in out.flat)
        assert out.tolist() == np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(source).tolist()


def test_string_object_array_rejects_other_objects():
    with pytest.raises(runnx.InvalidArgument, match=r"input 'x'.*element 1 is int"):
        round_trip(TP.STRING, np.array(["a", 3], dtype=object))


def test_non_contiguous_and_byte_swapped_inputs():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for array in (x.transpose(2, 0, 1), x[:, ::2, 1:], np.asfortranarray(x), x.astype(">f4"), x[..., ::-1]):
        out = round_trip(TP.FLOAT, array)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, array)


def test_python_lists_and_scalars_take_the_declared_type():
    out = round_trip(TP.FLOAT, [[1, 2], [3, 4]])
    assert out.dtype == np.float32 and out.shape == (2, 2)
    out = round_trip(TP.INT64, 7)
    assert out.dtype == np.int64 and out.shape == () and out == 7
    out = round_trip(TP.FLOAT, np.float32(2.5))
    assert out.dtype == np.float32 and out.shape == ()


def test_output_owns_its_buffer_and_is_writable():
    out = round_trip(TP.FLOAT, np.ones((3, 4), np.float32))
    assert out.flags.writeable and out.flags.c_contiguous
    out[0, 0] = 5  # the array is the caller's to change


def test_missing_ml_dtypes_names_the_type(tmp_path):
    # A bfloat16 output in a fresh interpreter where `import ml_dtypes` fails (onnx needs
    # ml_dtypes, so the model is built here): the error names the type and the package.
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TP.BFLOAT16)],
        "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TP.BFLOAT16, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    path = tmp_path / "cast_bf16.onnx"
    path.write_bytes(model.SerializeToString())
    code = f"""
import sys
sys.modules["ml_dtypes"] = None
import numpy as np, runnx
try:
    runnx.InferenceSession({str(path)!r}).run(None, {{"x": np.ones(2, np.float32)}})
except Exception as e:
    print(type(e).__name__, e)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "bfloat16" in result.stdout and "pip install ml_dtypes" in result.stdout, result.stdout + result.stderr
