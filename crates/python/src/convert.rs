//! Conversions between Python objects (numpy arrays, lists, dicts, `None`) and runtime values.
//!
//! Inputs: a numpy array's buffer is copied once into the tensor's `Vec` (after making it
//! C-contiguous and native-endian when it is not). The element type comes from the dtype's kind
//! and item size (`f`, 4 bytes: float32), or for the `ml_dtypes` types (bfloat16, the float8 and
//! float4 types, int4, uint4, int2, uint2), which numpy registers as user types, from the
//! dtype's name. Those store one element per byte (two for bfloat16), as runnx does.
//!
//! Outputs: the tensor's `Vec` becomes the numpy array's buffer without a copy. Strings come
//! back as object arrays of `str`, like onnxruntime; the `ml_dtypes` types as arrays of those
//! dtypes, `ml_dtypes` being imported only when such an output appears.

use half::{bf16, f16};
use num_complex::Complex;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::prelude::*;
use numpy::{Element, PyArray, PyArrayDescr, PyUntypedArray};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use runnx_ir::scalar::{F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
use runnx_ir::{DataType, Tensor, TensorData, Value, ValueType};

use crate::errors::INVALID_ARGUMENT;

/// The `ml_dtypes` types and their names (numpy registers them as user-defined dtypes, whose
/// type numbers depend on import order, so they are recognised by name).
const ML_DTYPES: [(DataType, &str); 11] = [
    (DataType::Bfloat16, "bfloat16"),
    (DataType::Float8E4M3FN, "float8_e4m3fn"),
    (DataType::Float8E4M3FNUZ, "float8_e4m3fnuz"),
    (DataType::Float8E5M2, "float8_e5m2"),
    (DataType::Float8E5M2FNUZ, "float8_e5m2fnuz"),
    (DataType::Float8E8M0, "float8_e8m0fnu"),
    (DataType::Float4E2M1, "float4_e2m1fn"),
    (DataType::Int4, "int4"),
    (DataType::Uint4, "uint4"),
    (DataType::Int2, "int2"),
    (DataType::Uint2, "uint2"),
];

/// How a numpy array's buffer holds its elements.
#[derive(Copy, Clone, Debug, PartialEq)]
enum ArrayKind {
    /// Elements of this ONNX type, in runnx's own in-memory layout (or, for bool and the
    /// sub-byte types, one byte per element).
    Elements(DataType),
    /// `<U`: fixed-width UCS-4 strings, NUL-padded.
    Unicode,
    /// `|S`: fixed-width byte strings, NUL-padded (decoded as UTF-8).
    Bytes,
    /// `O`: pointers to Python objects (`str` or `bytes` for a string tensor).
    Object,
}

fn array_kind(descr: &Bound<'_, PyArrayDescr>) -> PyResult<Option<ArrayKind>> {
    use DataType::*;
    let itemsize = descr.itemsize();
    if descr.num() >= numpy::npyffi::NPY_TYPES::NPY_USERDEF as i32 {
        let type_name = descr.typeobj().name()?;
        let type_name = type_name.to_cow()?;
        let found = ML_DTYPES.iter().find(|(dtype, name)| {
            *name == type_name && itemsize == if *dtype == Bfloat16 { 2 } else { 1 }
        });
        return Ok(found.map(|(dtype, _)| ArrayKind::Elements(*dtype)));
    }
    Ok(Some(match (descr.kind(), itemsize) {
        (b'b', 1) => ArrayKind::Elements(Bool),
        (b'i', 1) => ArrayKind::Elements(Int8),
        (b'i', 2) => ArrayKind::Elements(Int16),
        (b'i', 4) => ArrayKind::Elements(Int32),
        (b'i', 8) => ArrayKind::Elements(Int64),
        (b'u', 1) => ArrayKind::Elements(Uint8),
        (b'u', 2) => ArrayKind::Elements(Uint16),
        (b'u', 4) => ArrayKind::Elements(Uint32),
        (b'u', 8) => ArrayKind::Elements(Uint64),
        (b'f', 2) => ArrayKind::Elements(Float16),
        (b'f', 4) => ArrayKind::Elements(Float),
        (b'f', 8) => ArrayKind::Elements(Double),
        (b'c', 8) => ArrayKind::Elements(Complex64),
        (b'c', 16) => ArrayKind::Elements(Complex128),
        (b'U', _) => ArrayKind::Unicode,
        (b'S', _) => ArrayKind::Bytes,
        (b'O', _) => ArrayKind::Object,
        _ => return Ok(None),
    }))
}

/// The numpy dtype name a Python list or scalar fed for `dtype` is converted with (`None`: let
/// numpy choose, as for strings).
fn numpy_name(dtype: DataType) -> Option<&'static str> {
    use DataType::*;
    Some(match dtype {
        Float => "float32",
        Double => "float64",
        Float16 => "float16",
        Int8 => "int8",
        Int16 => "int16",
        Int32 => "int32",
        Int64 => "int64",
        Uint8 => "uint8",
        Uint16 => "uint16",
        Uint32 => "uint32",
        Uint64 => "uint64",
        Bool => "bool",
        Complex64 => "complex64",
        Complex128 => "complex128",
        _ => return None,
    })
}

/// A Python attribute looked up once (`numpy.ascontiguousarray`...).
fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    attr: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import(module)?.getattr(attr)?.unbind())
    })
    .map(|f| f.bind(py).clone())
}

fn np_asarray<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    cached(py, &CELL, "numpy", "asarray")
}

fn np_ascontiguousarray<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    cached(py, &CELL, "numpy", "ascontiguousarray")
}

// ---------------------------------------------------------------------------------------------
// Python -> Value
// ---------------------------------------------------------------------------------------------

/// The value fed for input `name`, whose declared type is `ty` (`Unknown` for a name the model
/// does not have: the runtime then reports the name).
pub fn value_from_py(obj: &Bound<'_, PyAny>, ty: &ValueType, name: &str) -> PyResult<Value> {
    match ty {
        ValueType::Tensor(tt) | ValueType::SparseTensor(tt) => {
            Ok(Value::Tensor(tensor_from_py(obj, Some(tt.dtype), name)?))
        }
        ValueType::Sequence(elem) => sequence_from_py(obj, elem, name),
        ValueType::Optional(elem) => {
            let value = if obj.is_none() {
                None
            } else {
                Some(Box::new(value_from_py(obj, elem, name)?))
            };
            Ok(Value::Optional {
                elem_type: (**elem).clone(),
                value,
            })
        }
        ValueType::Map(key, value) => map_from_py(obj, *key, value, name),
        ValueType::Unknown => {
            if obj.is_none() {
                Ok(Value::Optional {
                    elem_type: ValueType::Unknown,
                    value: None,
                })
            } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
                sequence_from_py(obj, &ValueType::Unknown, name)
            } else if obj.is_instance_of::<PyDict>() {
                let keys = PyList::new(obj.py(), obj.cast::<PyDict>()?.keys())?;
                let key = tensor_from_py(keys.as_any(), None, name)?.dtype();
                map_from_py(obj, key, &ValueType::Unknown, name)
            } else {
                Ok(Value::Tensor(tensor_from_py(obj, None, name)?))
            }
        }
    }
}

fn sequence_from_py(obj: &Bound<'_, PyAny>, elem: &ValueType, name: &str) -> PyResult<Value> {
    if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
        return Err(INVALID_ARGUMENT.err(format!(
            "input '{name}' is a sequence ({}): feed a list of values, got {}",
            ValueType::Sequence(Box::new(elem.clone())).type_string(),
            type_name(obj)
        )));
    }
    let mut items = Vec::with_capacity(obj.len()?);
    for (i, item) in obj.try_iter()?.enumerate() {
        items.push(value_from_py(&item?, elem, &format!("{name}[{i}]"))?);
    }
    let elem_type = match (elem, items.first()) {
        (ValueType::Unknown, Some(Value::Tensor(t))) => ValueType::tensor(t.dtype(), None),
        _ => elem.clone(),
    };
    Ok(Value::Sequence { elem_type, items })
}

fn map_from_py(
    obj: &Bound<'_, PyAny>,
    key: DataType,
    value: &ValueType,
    name: &str,
) -> PyResult<Value> {
    let py = obj.py();
    let dict = obj.cast::<PyDict>().map_err(|_| {
        INVALID_ARGUMENT.err(format!(
            "input '{name}' is a map: feed a dict, got {}",
            type_name(obj)
        ))
    })?;
    let keys = tensor_from_py(PyList::new(py, dict.keys())?.as_any(), Some(key), name)?;
    let values = PyList::new(py, dict.values())?;
    let values = match value {
        ValueType::Tensor(tt) => {
            Value::Tensor(tensor_from_py(values.as_any(), Some(tt.dtype), name)?)
        }
        ValueType::Unknown
            if values
                .iter()
                .all(|v| !v.is_instance_of::<PyList>() && !v.is_instance_of::<PyDict>()) =>
        {
            Value::Tensor(tensor_from_py(values.as_any(), None, name)?)
        }
        other => sequence_from_py(values.as_any(), other, name)?,
    };
    Ok(Value::Map {
        keys,
        values: Box::new(values),
    })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// A tensor from a numpy array, or from anything `numpy.asarray` takes (converted to the
/// declared element type when numpy has it).
pub(crate) fn tensor_from_py(
    obj: &Bound<'_, PyAny>,
    declared: Option<DataType>,
    name: &str,
) -> PyResult<Tensor> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        return tensor_from_array(array, name);
    }
    if obj.is_none() {
        let expected = declared.map_or("a tensor".to_string(), |d| format!("a tensor of {d}"));
        return Err(INVALID_ARGUMENT.err(format!("input '{name}' expects {expected}, got None")));
    }
    let py = obj.py();
    let array = np_asarray(py)?
        .call1((obj, declared.and_then(numpy_name)))
        .map_err(|e| {
            INVALID_ARGUMENT.err(format!(
                "input '{name}': cannot make a numpy array of {}: {e}",
                type_name(obj)
            ))
        })?;
    let array = array.cast::<PyUntypedArray>()?;
    tensor_from_array(array, name)
}

/// A tensor holding a copy of `array`'s elements.
pub fn tensor_from_array(array: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<Tensor> {
    let py = array.py();
    let descr = array.dtype();
    let Some(kind) = array_kind(&descr)? else {
        return Err(INVALID_ARGUMENT.err(format!(
            "input '{name}': numpy dtype {} has no ONNX element type",
            descr
                .str()
                .map_or_else(|_| "?".to_string(), |s| s.to_string())
        )));
    };
    let native = descr.is_native_byteorder() != Some(false);
    let contiguous;
    let array = if native && array.is_c_contiguous() {
        array
    } else {
        let dtype = if native {
            descr.into_any()
        } else {
            descr.call_method1("newbyteorder", ("=",))?
        };
        contiguous = np_ascontiguousarray(py)?
            .call1((array, dtype))?
            .cast_into::<PyUntypedArray>()?;
        &contiguous
    };
    let shape = array.shape().to_vec();
    let len: usize = shape.iter().product();
    let itemsize = array.dtype().itemsize();
    let bytes = array_bytes(array, len * itemsize);
    let data = match kind {
        ArrayKind::Elements(dtype) => elements_from_bytes(dtype, bytes),
        ArrayKind::Unicode => TensorData::String(unicode_strings(bytes, itemsize)),
        ArrayKind::Bytes => TensorData::String(byte_strings(bytes, itemsize)),
        ArrayKind::Object => {
            let mut strings = Vec::with_capacity(len);
            for (i, ptr) in bytes
                .chunks_exact(std::mem::size_of::<*mut ffi::PyObject>())
                .enumerate()
            {
                let ptr = usize::from_ne_bytes(ptr.try_into().expect("pointer-sized chunk"))
                    as *mut ffi::PyObject;
                // SAFETY: an object array's elements are pointers to live Python objects (None
                // where unset), kept alive by the array, which we hold; a NULL is refused.
                let item = unsafe { Bound::from_borrowed_ptr_or_opt(py, ptr) };
                strings.push(match item {
                    Some(item) => string_of(&item).ok_or_else(|| {
                        INVALID_ARGUMENT.err(format!(
                            "input '{name}': an object array must hold str or bytes (a string tensor); element {i} is {}",
                            type_name(&item)
                        ))
                    })?,
                    None => String::new(),
                });
            }
            TensorData::String(strings)
        }
    };
    Tensor::new(shape, data).map_err(|e| INVALID_ARGUMENT.err(format!("input '{name}': {e}")))
}

fn string_of(item: &Bound<'_, PyAny>) -> Option<String> {
    if let Ok(s) = item.cast::<PyString>() {
        Some(s.to_string_lossy().into_owned())
    } else if let Ok(b) = item.cast::<PyBytes>() {
        Some(String::from_utf8_lossy(b.as_bytes()).into_owned())
    } else {
        None
    }
}

/// The first `len` bytes of a C-contiguous array's buffer.
fn array_bytes<'a>(array: &'a Bound<'_, PyUntypedArray>, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the array is C-contiguous and holds `len` bytes of elements (shape product times
    // item size) at its data pointer; the buffer lives as long as the array, which `'a`
    // borrows, and no Python code runs (nothing can resize it) while the slice is in use.
    unsafe {
        let data = (*numpy::npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data;
        std::slice::from_raw_parts(data as *const u8, len)
    }
}

/// Element types whose values are plain bytes: every bit pattern is a valid value and the
/// type has no padding, so a numpy buffer of the same layout can be copied into a `Vec` of it.
///
/// # Safety
/// Implement only for such types.
unsafe trait PlainBytes: Copy {}
// SAFETY: primitive numbers; `f16`/`bf16` are `repr(transparent)` over `u16`; `Complex<T>` is
// `repr(C)` `{ re: T, im: T }`, the layout of numpy's complex64/complex128.
unsafe impl PlainBytes for i8 {}
unsafe impl PlainBytes for i16 {}
unsafe impl PlainBytes for i32 {}
unsafe impl PlainBytes for i64 {}
unsafe impl PlainBytes for u8 {}
unsafe impl PlainBytes for u16 {}
unsafe impl PlainBytes for u32 {}
unsafe impl PlainBytes for u64 {}
unsafe impl PlainBytes for f32 {}
unsafe impl PlainBytes for f64 {}
unsafe impl PlainBytes for f16 {}
unsafe impl PlainBytes for bf16 {}
unsafe impl PlainBytes for Complex<f32> {}
unsafe impl PlainBytes for Complex<f64> {}

/// `bytes` (a whole number of native-endian `T`s) copied into a `Vec<T>`: one `memcpy`.
fn plain_vec<T: PlainBytes>(bytes: &[u8]) -> Vec<T> {
    let len = bytes.len() / std::mem::size_of::<T>();
    let mut out = Vec::<T>::with_capacity(len);
    // SAFETY: `out` has room for `len` elements, `len * size_of::<T>()` bytes; the source is
    // a byte slice (any alignment) that does not overlap the new allocation; every byte
    // pattern is a valid `T` (`PlainBytes`), so the elements are initialised.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            out.as_mut_ptr().cast::<u8>(),
            len * std::mem::size_of::<T>(),
        );
        out.set_len(len);
    }
    out
}

fn elements_from_bytes(dtype: DataType, bytes: &[u8]) -> TensorData {
    use DataType as D;
    fn each<T>(bytes: &[u8], f: impl Fn(u8) -> T) -> Vec<T> {
        bytes.iter().map(|&b| f(b)).collect()
    }
    match dtype {
        D::Float => TensorData::Float(plain_vec(bytes)),
        D::Double => TensorData::Double(plain_vec(bytes)),
        D::Float16 => TensorData::Float16(plain_vec(bytes)),
        D::Bfloat16 => TensorData::Bfloat16(plain_vec(bytes)),
        D::Int8 => TensorData::Int8(plain_vec(bytes)),
        D::Int16 => TensorData::Int16(plain_vec(bytes)),
        D::Int32 => TensorData::Int32(plain_vec(bytes)),
        D::Int64 => TensorData::Int64(plain_vec(bytes)),
        D::Uint8 => TensorData::Uint8(plain_vec(bytes)),
        D::Uint16 => TensorData::Uint16(plain_vec(bytes)),
        D::Uint32 => TensorData::Uint32(plain_vec(bytes)),
        D::Uint64 => TensorData::Uint64(plain_vec(bytes)),
        D::Complex64 => TensorData::Complex64(plain_vec(bytes)),
        D::Complex128 => TensorData::Complex128(plain_vec(bytes)),
        // numpy stores 0/1, but a view can put any byte in a bool array.
        D::Bool => TensorData::Bool(each(bytes, |b| b != 0)),
        D::Float8E4M3FN => TensorData::Float8E4M3FN(each(bytes, F8E4M3FN::from_bits)),
        D::Float8E4M3FNUZ => TensorData::Float8E4M3FNUZ(each(bytes, F8E4M3FNUZ::from_bits)),
        D::Float8E5M2 => TensorData::Float8E5M2(each(bytes, F8E5M2::from_bits)),
        D::Float8E5M2FNUZ => TensorData::Float8E5M2FNUZ(each(bytes, F8E5M2FNUZ::from_bits)),
        D::Float8E8M0 => TensorData::Float8E8M0(each(bytes, F8E8M0::from_bits)),
        // ml_dtypes keeps the sub-byte types' bits in the low bits of each byte (int4 -1 is
        // 0x0F); runnx sign-extends the signed ones.
        D::Float4E2M1 => TensorData::Float4E2M1(each(bytes, F4E2M1::from_bits)),
        D::Int4 => TensorData::Int4(each(bytes, I4::from_bits)),
        D::Uint4 => TensorData::Uint4(each(bytes, U4::from_bits)),
        D::Int2 => TensorData::Int2(each(bytes, I2::from_bits)),
        D::Uint2 => TensorData::Uint2(each(bytes, U2::from_bits)),
        D::String => unreachable!("strings are not read as elements"),
    }
}

/// numpy `<U{width}` elements: UCS-4 code points, NUL-padded on the right.
fn unicode_strings(bytes: &[u8], itemsize: usize) -> Vec<String> {
    if itemsize == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(itemsize)
        .map(|item| {
            let mut s = String::with_capacity(item.len() / 4);
            for cp in item
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            {
                if cp == 0 {
                    break;
                }
                s.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            s
        })
        .collect()
}

/// numpy `|S{width}` elements: bytes, NUL-padded on the right, decoded as UTF-8.
fn byte_strings(bytes: &[u8], itemsize: usize) -> Vec<String> {
    if itemsize == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(itemsize)
        .map(|item| {
            let end = item.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            String::from_utf8_lossy(&item[..end]).into_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Value -> Python
// ---------------------------------------------------------------------------------------------

/// The Python form of output `name`: a numpy array, a list (sequence), `None` or a value
/// (optional), a dict (map).
pub fn value_to_py<'py>(py: Python<'py>, value: Value, name: &str) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Tensor(t) => tensor_to_py(py, t, name),
        Value::Sequence { items, .. } => {
            let items = items
                .into_iter()
                .map(|v| value_to_py(py, v, name))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any())
        }
        Value::Optional { value: None, .. } => Ok(py.None().into_bound(py)),
        Value::Optional { value: Some(v), .. } => value_to_py(py, *v, name),
        Value::Map { keys, values } => {
            let keys = tensor_to_py(py, keys, name)?.call_method0("tolist")?;
            let values = match *values {
                Value::Tensor(t) => tensor_to_py(py, t, name)?.call_method0("tolist")?,
                other => value_to_py(py, other, name)?,
            };
            let dict = PyDict::new(py);
            for (k, v) in keys.try_iter()?.zip(values.try_iter()?) {
                dict.set_item(k?, v?)?;
            }
            Ok(dict.into_any())
        }
    }
}

/// A numpy array owning `values` (no copy).
fn owned_array<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
    values: Vec<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| {
        crate::errors::RUNTIME_EXCEPTION.err(format!("output of shape {shape:?}: {e}"))
    })?;
    Ok(PyArray::from_owned_array(py, array).into_any())
}

/// A numpy array of an `ml_dtypes` type over the raw codes `values`.
fn ml_dtypes_array<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
    values: Vec<T>,
    dtype: DataType,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    static TYPES: [PyOnceLock<Py<PyAny>>; ML_DTYPES.len()] =
        [const { PyOnceLock::new() }; ML_DTYPES.len()];
    let index = ML_DTYPES
        .iter()
        .position(|(d, _)| *d == dtype)
        .expect("an ml_dtypes type");
    let attr = ML_DTYPES[index].1;
    let numpy_type = TYPES[index]
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("ml_dtypes")?.getattr(attr)?.unbind()))
        .map_err(|e| {
            INVALID_ARGUMENT.err(format!(
                "output '{name}' has element type {dtype}, which numpy represents with the ml_dtypes package \
                 (ml_dtypes.{attr}); install it (pip install ml_dtypes): {e}"
            ))
        })?;
    owned_array(py, shape, values)?.call_method1("view", (numpy_type.bind(py),))
}

fn tensor_to_py<'py>(py: Python<'py>, tensor: Tensor, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let shape: Vec<usize> = tensor.shape().to_vec();
    let shape = shape.as_slice();
    let dtype = tensor.dtype();
    // `into_iter().map(..).collect()` between same-size types reuses the allocation.
    match tensor.into_data() {
        TensorData::Float(v) => owned_array(py, shape, v),
        TensorData::Double(v) => owned_array(py, shape, v),
        TensorData::Float16(v) => owned_array(py, shape, v),
        TensorData::Int8(v) => owned_array(py, shape, v),
        TensorData::Int16(v) => owned_array(py, shape, v),
        TensorData::Int32(v) => owned_array(py, shape, v),
        TensorData::Int64(v) => owned_array(py, shape, v),
        TensorData::Uint8(v) => owned_array(py, shape, v),
        TensorData::Uint16(v) => owned_array(py, shape, v),
        TensorData::Uint32(v) => owned_array(py, shape, v),
        TensorData::Uint64(v) => owned_array(py, shape, v),
        TensorData::Bool(v) => owned_array(py, shape, v),
        TensorData::Complex64(v) => owned_array(py, shape, v),
        TensorData::Complex128(v) => owned_array(py, shape, v),
        TensorData::String(v) => {
            let objects: Vec<Py<PyAny>> = v
                .iter()
                .map(|s| PyString::new(py, s).into_any().unbind())
                .collect();
            owned_array(py, shape, objects)
        }
        TensorData::Bfloat16(v) => ml_dtypes_array(py, shape, codes(v, bf16::to_bits), dtype, name),
        TensorData::Float8E4M3FN(v) => {
            ml_dtypes_array(py, shape, codes(v, F8E4M3FN::to_bits), dtype, name)
        }
        TensorData::Float8E4M3FNUZ(v) => {
            ml_dtypes_array(py, shape, codes(v, F8E4M3FNUZ::to_bits), dtype, name)
        }
        TensorData::Float8E5M2(v) => {
            ml_dtypes_array(py, shape, codes(v, F8E5M2::to_bits), dtype, name)
        }
        TensorData::Float8E5M2FNUZ(v) => {
            ml_dtypes_array(py, shape, codes(v, F8E5M2FNUZ::to_bits), dtype, name)
        }
        TensorData::Float8E8M0(v) => {
            ml_dtypes_array(py, shape, codes(v, F8E8M0::to_bits), dtype, name)
        }
        TensorData::Float4E2M1(v) => {
            ml_dtypes_array(py, shape, codes(v, F4E2M1::to_bits), dtype, name)
        }
        TensorData::Int4(v) => ml_dtypes_array(py, shape, codes(v, I4::to_bits), dtype, name),
        TensorData::Uint4(v) => ml_dtypes_array(py, shape, codes(v, U4::to_bits), dtype, name),
        TensorData::Int2(v) => ml_dtypes_array(py, shape, codes(v, I2::to_bits), dtype, name),
        TensorData::Uint2(v) => ml_dtypes_array(py, shape, codes(v, U2::to_bits), dtype, name),
    }
}

/// The raw codes of a vector of small-type elements.
fn codes<T, C>(values: Vec<T>, to_bits: impl Fn(T) -> C) -> Vec<C> {
    values.into_iter().map(to_bits).collect()
}

/// Rejects what is neither a value nor `None` early, with the input's name.
pub fn check_feed_key(key: &Bound<'_, PyAny>) -> PyResult<String> {
    key.cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "input_feed keys must be input names (str), got {}",
                type_name(key)
            ))
        })?
        .to_cow()
        .map(|s| s.into_owned())
}
