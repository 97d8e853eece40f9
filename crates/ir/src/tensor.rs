//! Dense tensors of every ONNX element type.
//!
//! A [`Tensor`] is a shape plus a reference-counted, contiguous, row-major buffer. Cloning a
//! tensor and changing its shape (Reshape, Squeeze, Flatten...) never copies data; a kernel that
//! holds the only reference to its input can take the buffer and write into it.

use std::sync::Arc;

use half::{bf16, f16};
use num_complex::Complex;
use smallvec::SmallVec;

use crate::dtype::DataType;
use crate::scalar::{F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
use crate::IrError;

/// Tensor dimensions. Six inline dims cover nearly every real model without allocating.
pub type Shape = SmallVec<[usize; 6]>;

/// The element buffer of a tensor: one variant per ONNX element type.
///
/// Sub-byte types (int4, uint4, int2, uint2, float4e2m1) are stored one element per byte; they are
/// packed only when serialised. Strings are UTF-8 (invalid bytes are replaced on load).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Float(Vec<f32>),
    Uint8(Vec<u8>),
    Int8(Vec<i8>),
    Uint16(Vec<u16>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    String(Vec<String>),
    Bool(Vec<bool>),
    Float16(Vec<f16>),
    Double(Vec<f64>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Complex64(Vec<Complex<f32>>),
    Complex128(Vec<Complex<f64>>),
    Bfloat16(Vec<bf16>),
    Float8E4M3FN(Vec<F8E4M3FN>),
    Float8E4M3FNUZ(Vec<F8E4M3FNUZ>),
    Float8E5M2(Vec<F8E5M2>),
    Float8E5M2FNUZ(Vec<F8E5M2FNUZ>),
    Uint4(Vec<U4>),
    Int4(Vec<I4>),
    Float4E2M1(Vec<F4E2M1>),
    Float8E8M0(Vec<F8E8M0>),
    Uint2(Vec<U2>),
    Int2(Vec<I2>),
}

/// A Rust type that is the in-memory element of one ONNX data type.
pub trait Element: Clone + Default + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DataType;
    fn slice(data: &TensorData) -> Option<&[Self]>;
    fn vec_mut(data: &mut TensorData) -> Option<&mut Vec<Self>>;
    fn into_vec(data: TensorData) -> Result<Vec<Self>, TensorData>;
    fn wrap(v: Vec<Self>) -> TensorData;
}

macro_rules! elements {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        $(
            impl Element for $ty {
                const DTYPE: DataType = DataType::$variant;
                fn slice(data: &TensorData) -> Option<&[Self]> {
                    match data { TensorData::$variant(v) => Some(v), _ => None }
                }
                fn vec_mut(data: &mut TensorData) -> Option<&mut Vec<Self>> {
                    match data { TensorData::$variant(v) => Some(v), _ => None }
                }
                fn into_vec(data: TensorData) -> Result<Vec<Self>, TensorData> {
                    match data { TensorData::$variant(v) => Ok(v), other => Err(other) }
                }
                fn wrap(v: Vec<Self>) -> TensorData { TensorData::$variant(v) }
            }
        )*

        impl TensorData {
            pub fn dtype(&self) -> DataType {
                match self { $(TensorData::$variant(_) => DataType::$variant,)* }
            }
            pub fn len(&self) -> usize {
                match self { $(TensorData::$variant(v) => v.len(),)* }
            }
            /// `len` default elements (zeros, empty strings, false) of `dtype`.
            pub fn zeros(dtype: DataType, len: usize) -> TensorData {
                match dtype { $(DataType::$variant => TensorData::$variant(vec![<$ty>::default(); len]),)* }
            }
            /// Gathers elements by index: `out[i] = self[indices[i]]`. The workhorse of the
            /// data-movement ops (Transpose, Slice, Gather, Expand...), which are type-agnostic.
            pub fn gather(&self, indices: &[usize]) -> TensorData {
                match self {
                    $(TensorData::$variant(v) => {
                        TensorData::$variant(indices.iter().map(|&i| v[i].clone()).collect())
                    })*
                }
            }
            /// Concatenates buffers of the same type; `None` when the types differ.
            pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
                let first = parts.first()?;
                match first {
                    $(TensorData::$variant(_) => {
                        let mut out: Vec<$ty> = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                        for p in parts {
                            match p { TensorData::$variant(v) => out.extend_from_slice(v), _ => return None }
                        }
                        Some(TensorData::$variant(out))
                    })*
                }
            }
        }
    };
}

elements! {
    Float => f32,
    Uint8 => u8,
    Int8 => i8,
    Uint16 => u16,
    Int16 => i16,
    Int32 => i32,
    Int64 => i64,
    String => String,
    Bool => bool,
    Float16 => f16,
    Double => f64,
    Uint32 => u32,
    Uint64 => u64,
    Complex64 => Complex<f32>,
    Complex128 => Complex<f64>,
    Bfloat16 => bf16,
    Float8E4M3FN => F8E4M3FN,
    Float8E4M3FNUZ => F8E4M3FNUZ,
    Float8E5M2 => F8E5M2,
    Float8E5M2FNUZ => F8E5M2FNUZ,
    Uint4 => U4,
    Int4 => I4,
    Float4E2M1 => F4E2M1,
    Float8E8M0 => F8E8M0,
    Uint2 => U2,
    Int2 => I2,
}

impl TensorData {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Arc<TensorData>,
}

impl Tensor {
    /// A tensor over `data`; fails when the element count does not match `shape`.
    pub fn new(shape: impl AsRef<[usize]>, data: TensorData) -> Result<Tensor, IrError> {
        let shape = Shape::from_slice(shape.as_ref());
        let expected = shape_len(&shape);
        if expected != data.len() {
            return Err(IrError::ShapeMismatch {
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape,
            data: Arc::new(data),
        })
    }

    pub fn from_vec<T: Element>(
        shape: impl AsRef<[usize]>,
        values: Vec<T>,
    ) -> Result<Tensor, IrError> {
        Tensor::new(shape, T::wrap(values))
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor {
            shape: Shape::new(),
            data: Arc::new(T::wrap(vec![value])),
        }
    }

    /// A tensor of default values (zero, false, empty string).
    pub fn zeros(dtype: DataType, shape: impl AsRef<[usize]>) -> Tensor {
        let shape = Shape::from_slice(shape.as_ref());
        let data = TensorData::zeros(dtype, shape_len(&shape));
        Tensor {
            shape,
            data: Arc::new(data),
        }
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements as a slice of `T`; an error names both types when `T` is not the tensor's type.
    pub fn as_slice<T: Element>(&self) -> Result<&[T], IrError> {
        T::slice(&self.data).ok_or(IrError::WrongType {
            expected: T::DTYPE,
            actual: self.dtype(),
        })
    }

    /// The elements as a vector, without copying when this is the only reference.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>, IrError> {
        let actual = self.dtype();
        let data = Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone());
        T::into_vec(data).map_err(|_| IrError::WrongType {
            expected: T::DTYPE,
            actual,
        })
    }

    /// The elements as a vector when this is the only reference and `T` the element type;
    /// `None` (dropping this reference) otherwise. For recycling buffers, never copies.
    pub fn into_unique_vec<T: Element>(self) -> Option<Vec<T>> {
        T::into_vec(Arc::try_unwrap(self.data).ok()?).ok()
    }

    /// The buffer, without copying when this is the only reference.
    pub fn into_data(self) -> TensorData {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Mutable access to the elements, copying the buffer first if it is shared.
    pub fn make_mut<T: Element>(&mut self) -> Result<&mut [T], IrError> {
        let actual = self.dtype();
        T::vec_mut(Arc::make_mut(&mut self.data))
            .map(|v| v.as_mut_slice())
            .ok_or(IrError::WrongType {
                expected: T::DTYPE,
                actual,
            })
    }

    /// The same data under another shape with the same element count. Never copies.
    pub fn reshape(&self, shape: impl AsRef<[usize]>) -> Result<Tensor, IrError> {
        let shape = Shape::from_slice(shape.as_ref());
        if shape_len(&shape) != self.len() {
            return Err(IrError::ShapeMismatch {
                shape: shape.to_vec(),
                len: self.len(),
            });
        }
        Ok(Tensor {
            shape,
            data: self.data.clone(),
        })
    }

    /// True when both tensors share one buffer (a cheap view).
    pub fn shares_data_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// A scalar or single-element tensor's value as i64 (for shape-like inputs such as axes).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, IrError> {
        Ok(match self.data() {
            TensorData::Int64(v) => v.clone(),
            TensorData::Int32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Int16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Int8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Uint8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Uint16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Uint32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Uint64(v) => v.iter().map(|&x| x as i64).collect(),
            _ => {
                return Err(IrError::WrongType {
                    expected: DataType::Int64,
                    actual: self.dtype(),
                })
            }
        })
    }
}

/// Element count of a shape (1 for a scalar).
pub fn shape_len(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides (in elements) of a contiguous tensor.
pub fn strides_of(shape: &[usize]) -> Shape {
    let mut strides: Shape = smallvec::smallvec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_shares_the_buffer() {
        let t = Tensor::from_vec([2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let r = t.reshape([3, 2]).unwrap();
        assert!(r.shares_data_with(&t));
        assert!(t.reshape([4]).is_err());
    }

    #[test]
    fn type_errors_name_both_types() {
        let t = Tensor::scalar(1i64);
        let e = t.as_slice::<f32>().unwrap_err().to_string();
        assert!(e.contains("float") && e.contains("int64"), "{e}");
    }

    #[test]
    fn strides() {
        assert_eq!(strides_of(&[2, 3, 4]).as_slice(), &[12, 4, 1]);
        assert!(strides_of(&[]).is_empty());
    }
}
