//! Running code written once, generic over the element type, on tensors of any type.
//!
//! Rust has no generic closures, so a generic computation is a small struct implementing one of
//! the `*Fn` traits below; `with_*_type` matches the runtime [`DataType`] once and calls it with
//! the matching Rust type. There is one `match` per capability:
//! - [`with_any_type`]: every element type (data movement: Transpose, Gather, Pad...).
//! - [`with_num_type`]: integers, floats, float16, bfloat16 and bool, through [`Num`]
//!   (CumSum, Range, Scatter reductions, EyeLike...).
//! - [`with_ord_type`]: the [`Num`] types and strings, ordered by [`order`] (TopK, Unique).

use std::cmp::Ordering;

use half::{bf16, f16};
use num_complex::Complex;
use runnx_ir::scalar::{F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
use runnx_ir::{DataType, Element, Tensor};

use crate::OpError;

/// Every element type: an [`Element`] that can be compared for equality.
pub(crate) trait Elem: Element + PartialEq {}
impl<T: Element + PartialEq> Elem for T {}

/// A computation generic over any element type.
pub(crate) trait AnyFn {
    type Out;
    fn call<T: Elem>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`.
pub(crate) fn with_any_type<F: AnyFn>(dtype: DataType, f: F) -> F::Out {
    use DataType as D;
    match dtype {
        D::Float => f.call::<f32>(),
        D::Uint8 => f.call::<u8>(),
        D::Int8 => f.call::<i8>(),
        D::Uint16 => f.call::<u16>(),
        D::Int16 => f.call::<i16>(),
        D::Int32 => f.call::<i32>(),
        D::Int64 => f.call::<i64>(),
        D::String => f.call::<String>(),
        D::Bool => f.call::<bool>(),
        D::Float16 => f.call::<f16>(),
        D::Double => f.call::<f64>(),
        D::Uint32 => f.call::<u32>(),
        D::Uint64 => f.call::<u64>(),
        D::Complex64 => f.call::<Complex<f32>>(),
        D::Complex128 => f.call::<Complex<f64>>(),
        D::Bfloat16 => f.call::<bf16>(),
        D::Float8E4M3FN => f.call::<F8E4M3FN>(),
        D::Float8E4M3FNUZ => f.call::<F8E4M3FNUZ>(),
        D::Float8E5M2 => f.call::<F8E5M2>(),
        D::Float8E5M2FNUZ => f.call::<F8E5M2FNUZ>(),
        D::Uint4 => f.call::<U4>(),
        D::Int4 => f.call::<I4>(),
        D::Float4E2M1 => f.call::<F4E2M1>(),
        D::Float8E8M0 => f.call::<F8E8M0>(),
        D::Uint2 => f.call::<U2>(),
        D::Int2 => f.call::<I2>(),
    }
}

/// The arithmetic the numeric ops need, for integers, floats and bool (add is `or`, mul is
/// `and`, as in numpy). Integer arithmetic wraps; float16 and bfloat16 compute in f32 and round.
pub(crate) trait Num: Elem + Copy + PartialOrd {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, rhs: Self) -> Self;
    fn mul(self, rhs: Self) -> Self;
    fn to_f64(self) -> f64;
    /// Rounds floats; integers truncate and saturate (NaN becomes 0), as Rust's `as` does.
    fn from_f64(v: f64) -> Self;
    /// Integers wrap like a C cast; floats round.
    fn from_i64(v: i64) -> Self;
}

/// A computation generic over the [`Num`] types.
pub(crate) trait NumFn {
    type Out;
    fn call<T: Num>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`, or fails when `dtype` has no arithmetic.
pub(crate) fn with_num_type<F: NumFn>(dtype: DataType, f: F) -> Result<F::Out, OpError> {
    use DataType as D;
    Ok(match dtype {
        D::Float => f.call::<f32>(),
        D::Double => f.call::<f64>(),
        D::Float16 => f.call::<f16>(),
        D::Bfloat16 => f.call::<bf16>(),
        D::Uint8 => f.call::<u8>(),
        D::Int8 => f.call::<i8>(),
        D::Uint16 => f.call::<u16>(),
        D::Int16 => f.call::<i16>(),
        D::Int32 => f.call::<i32>(),
        D::Int64 => f.call::<i64>(),
        D::Uint32 => f.call::<u32>(),
        D::Uint64 => f.call::<u64>(),
        D::Bool => f.call::<bool>(),
        other => return Err(unsupported_type(other)),
    })
}

/// A computation generic over the ordered types: [`Num`] and strings.
pub(crate) trait OrdFn {
    type Out;
    fn call<T: Elem + PartialOrd>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`, or fails when `dtype` has no order (complex...).
pub(crate) fn with_ord_type<F: OrdFn>(dtype: DataType, f: F) -> Result<F::Out, OpError> {
    struct Numeric<F>(F);
    impl<F: OrdFn> NumFn for Numeric<F> {
        type Out = F::Out;
        fn call<T: Num>(self) -> F::Out {
            self.0.call::<T>()
        }
    }
    match dtype {
        DataType::String => Ok(f.call::<String>()),
        other => with_num_type(other, Numeric(f)),
    }
}

pub(crate) fn unsupported_type(dtype: DataType) -> OpError {
    OpError::unsupported(format!("element type {dtype} is not supported"))
}

/// A total order for sorting: the partial order with NaN (any value not equal to itself)
/// after everything else, as numpy sorts.
pub(crate) fn order<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    a.partial_cmp(b).unwrap_or_else(|| {
        #[allow(clippy::eq_op)]
        let (a_nan, b_nan) = (a != a, b != b);
        a_nan.cmp(&b_nan)
    })
}

/// A scalar tensor of `dtype` holding `v` (converted as [`Num::from_f64`] does); for types
/// without arithmetic (strings...) only 0 is accepted, as the type's default value.
pub(crate) fn scalar_from_f64(dtype: DataType, v: f64) -> Result<Tensor, OpError> {
    struct Scalar(f64);
    impl NumFn for Scalar {
        type Out = Tensor;
        fn call<T: Num>(self) -> Tensor {
            Tensor::scalar(T::from_f64(self.0))
        }
    }
    match with_num_type(dtype, Scalar(v)) {
        Ok(t) => Ok(t),
        Err(_) if v == 0.0 => Ok(Tensor::zeros(dtype, [])),
        Err(e) => Err(e),
    }
}

/// The elements of a numeric tensor as f64.
pub(crate) fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>, OpError> {
    struct ToF64<'a>(&'a Tensor);
    impl NumFn for ToF64<'_> {
        type Out = Vec<f64>;
        fn call<T: Num>(self) -> Vec<f64> {
            self.0
                .as_slice::<T>()
                .map(|s| s.iter().map(|x| x.to_f64()).collect())
                .unwrap_or_default()
        }
    }
    with_num_type(t.dtype(), ToF64(t))
}

// The `Num` impls: one line per primitive type through two small macros.

macro_rules! num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            fn add(self, rhs: Self) -> Self { self.wrapping_add(rhs) }
            fn mul(self, rhs: Self) -> Self { self.wrapping_mul(rhs) }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as Self }
            fn from_i64(v: i64) -> Self { v as Self }
        }
    )*};
}
num_int!(u8, i8, u16, i16, u32, i32, u64, i64);

macro_rules! num_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn add(self, rhs: Self) -> Self { self + rhs }
            fn mul(self, rhs: Self) -> Self { self * rhs }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as Self }
            fn from_i64(v: i64) -> Self { v as Self }
        }
    )*};
}
num_float!(f32, f64);

macro_rules! num_half {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: Self = <$t>::ZERO;
            const ONE: Self = <$t>::ONE;
            fn add(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() + rhs.to_f32()) }
            fn mul(self, rhs: Self) -> Self { <$t>::from_f32(self.to_f32() * rhs.to_f32()) }
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
        }
    )*};
}
num_half!(f16, bf16);

impl Num for bool {
    const ZERO: Self = false;
    const ONE: Self = true;
    fn add(self, rhs: Self) -> Self {
        self | rhs
    }
    fn mul(self, rhs: Self) -> Self {
        self & rhs
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_sorts_last() {
        let mut v = [2.0f32, f32::NAN, -1.0, 0.5];
        v.sort_by(order);
        assert_eq!(&v[..3], &[-1.0, 0.5, 2.0]);
        assert!(v[3].is_nan());
    }

    #[test]
    fn integer_arithmetic_wraps() {
        assert_eq!(Num::add(250u8, 10), 4);
        assert_eq!(Num::mul(i8::MIN, -1), i8::MIN);
        assert_eq!(<u8 as Num>::from_f64(300.0), 255);
    }

    #[test]
    fn scalars_of_any_type() {
        assert_eq!(
            scalar_from_f64(DataType::Int32, 3.0).unwrap(),
            Tensor::scalar(3i32)
        );
        assert_eq!(
            scalar_from_f64(DataType::String, 0.0).unwrap(),
            Tensor::scalar(String::new())
        );
        assert!(scalar_from_f64(DataType::String, 1.0).is_err());
    }
}
