//! Binary and variadic elementwise ops: arithmetic (Add, Sub, Mul, Div, Pow, Mod), Max, Min,
//! Sum, Mean, comparisons, logic, bitwise ops, Where and PRelu.
//!
//! Every op broadcasts through [`crate::kernels::broadcast`]. Each kernel is written once over
//! its element type through a small trait ([`Numeric`], [`Integer`]) and reached from the runtime
//! [`DataType`] by one `with_*_type` match; the op is chosen once per run, outside the element
//! loops.
//!
//! Opset < 7 versions of the binary ops broadcast the old way (see [`LegacyBroadcast`]).

use half::{bf16, f16};
use runnx_ir::{DataType, Element, Shape, Tensor, Value};

use super::shape::dispatch::{with_any_type, with_ord_type, AnyFn, Elem, OrdFn};
use crate::kernels::broadcast::{
    binary_assign, binary_map, broadcast_shapes, is_broadcastable_to, ternary_map,
};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Add", &[1, 6, 7, 13, 14], |i| arith(i, Arith::Add));
    reg.add_versions("", "Sub", &[1, 6, 7, 13, 14], |i| arith(i, Arith::Sub));
    reg.add_versions("", "Mul", &[1, 6, 7, 13, 14], |i| arith(i, Arith::Mul));
    reg.add_versions("", "Div", &[1, 6, 7, 13, 14], |i| arith(i, Arith::Div));
    reg.add_versions("", "Mod", &[10, 13, 28], build_mod);
    reg.add_versions("", "Pow", &[1, 7, 12, 13, 15], build_pow);
    reg.add_versions("", "BitShift", &[11, 28], build_bitshift);
    reg.add("", "BitwiseAnd", 18, |i| bitwise(i, Bitwise::And));
    reg.add("", "BitwiseOr", 18, |i| bitwise(i, Bitwise::Or));
    reg.add("", "BitwiseXor", 18, |i| bitwise(i, Bitwise::Xor));
    reg.add("", "BitwiseNot", 18, |_| Ok(Box::new(BitwiseNotKernel)));
    reg.add_versions("", "And", &[1, 7], |i| logic(i, Logic::And));
    reg.add_versions("", "Or", &[1, 7], |i| logic(i, Logic::Or));
    reg.add_versions("", "Xor", &[1, 7], |i| logic(i, Logic::Xor));
    reg.add("", "Not", 1, |_| Ok(Box::new(NotKernel)));
    reg.add_versions("", "Equal", &[1, 7, 11, 13, 19], |i| {
        compare(i, Compare::Equal)
    });
    reg.add_versions("", "Less", &[1, 7, 9, 13], |i| compare(i, Compare::Less));
    reg.add_versions("", "Greater", &[1, 7, 9, 13], |i| {
        compare(i, Compare::Greater)
    });
    reg.add_versions("", "LessOrEqual", &[12, 16], |i| {
        compare(i, Compare::LessOrEqual)
    });
    reg.add_versions("", "GreaterOrEqual", &[12, 16], |i| {
        compare(i, Compare::GreaterOrEqual)
    });
    reg.add_versions("", "Max", &[1, 6, 8, 12, 13], |_| variadic(Variadic::Max));
    reg.add_versions("", "Min", &[1, 6, 8, 12, 13], |_| variadic(Variadic::Min));
    reg.add_versions("", "Sum", &[1, 6, 8, 13], |_| variadic(Variadic::Sum));
    reg.add_versions("", "Mean", &[1, 6, 8, 13], |_| variadic(Variadic::Mean));
    reg.add_versions("", "Where", &[9, 16], |_| Ok(Box::new(WhereKernel)));
    reg.add_versions("", "PRelu", &[1, 6, 7, 9, 16], |i| {
        Ok(Box::new(PReluKernel {
            legacy: i.opset < 7,
        }))
    });
}

// ---------------------------------------------------------------------------------------------
// Element traits

/// The arithmetic of one numeric element type, with ONNX semantics: integers wrap (two's
/// complement, like C++ on every platform onnxruntime runs on), integer division truncates
/// toward zero, floats follow IEEE 754, and float16/bfloat16 compute in f32 and round once per
/// operation.
pub(crate) trait Numeric: Element + Copy + PartialOrd {
    const IS_INTEGER: bool;
    fn zero() -> Self;
    fn add(self, rhs: Self) -> Self;
    fn sub(self, rhs: Self) -> Self;
    fn mul(self, rhs: Self) -> Self;
    /// Integers truncate toward zero; the caller rules out a zero integer divisor.
    fn div(self, rhs: Self) -> Self;
    /// `self - floor(self / rhs) * rhs`: the result has the divisor's sign (Python's `%`).
    fn rem_floor(self, rhs: Self) -> Self;
    /// `self - trunc(self / rhs) * rhs`: the result has the dividend's sign (C's `fmod`).
    fn rem_trunc(self, rhs: Self) -> Self;
    /// `self` to the power `e`; integers by repeated squaring (wrapping) when `e >= 0`.
    fn pow(self, e: Self) -> Self;
    /// `self` to a power of another type, computed in f64 as numpy promotes mixed types;
    /// integers with a non-negative integral exponent stay exact.
    fn pow_f64(self, e: f64) -> Self;
    /// The larger value; NaN when either is NaN.
    fn max(self, rhs: Self) -> Self;
    /// The smaller value; NaN when either is NaN.
    fn min(self, rhs: Self) -> Self;
    /// Wraps for the most negative integer, as C++ does.
    fn abs(self) -> Self;
    fn neg(self) -> Self;
    /// -1, 0 or 1 (NaN and signed zeros stay as they are).
    fn sign(self) -> Self;
    fn to_f64(self) -> f64;
    /// Floats round to nearest; integers truncate toward zero and saturate (NaN becomes 0).
    fn from_f64(v: f64) -> Self;
}

/// Bit operations of the integer types (BitShift, Bitwise*).
pub(crate) trait Integer: Numeric {
    fn bit_and(self, rhs: Self) -> Self;
    fn bit_or(self, rhs: Self) -> Self;
    fn bit_xor(self, rhs: Self) -> Self;
    fn bit_not(self) -> Self;
    /// Shifts left; amounts that are negative or at least the bit width give 0.
    fn shift_left(self, amount: Self) -> Self;
    /// Shifts right, arithmetically for signed types; amounts that are negative or at least the
    /// bit width give the sign fill alone (-1 for a negative signed value, else 0).
    fn shift_right(self, amount: Self) -> Self;
}

/// Integer exponentiation by squaring, wrapping on overflow.
fn wrapping_pow<T: Copy>(mut base: T, mut e: u128, one: T, mul: impl Fn(T, T) -> T) -> T {
    let mut acc = one;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul(acc, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    acc
}

/// numpy's floor-mod for floats: the C `fmod` corrected to the divisor's sign, a zero result
/// carrying the divisor's sign.
fn float_rem_floor<F: num_traits::Float>(a: F, b: F) -> F {
    let m = a % b;
    if b.is_zero() || m.is_nan() {
        m
    } else if m.is_zero() {
        F::zero().copysign(b)
    } else if (b < F::zero()) != (m < F::zero()) {
        m + b
    } else {
        m
    }
}

fn float_max<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a >= b {
        a
    } else {
        b
    }
}

fn float_min<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a <= b {
        a
    } else {
        b
    }
}

fn float_sign<F: num_traits::Float>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        x
    }
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const IS_INTEGER: bool = true;
            fn zero() -> Self { 0 }
            fn add(self, rhs: Self) -> Self { self.wrapping_add(rhs) }
            fn sub(self, rhs: Self) -> Self { self.wrapping_sub(rhs) }
            fn mul(self, rhs: Self) -> Self { self.wrapping_mul(rhs) }
            fn div(self, rhs: Self) -> Self { self.wrapping_div(rhs) }
            fn rem_floor(self, rhs: Self) -> Self {
                let r = self.wrapping_rem(rhs);
                if r != 0 && ((r as i128) < 0) != ((rhs as i128) < 0) { r.wrapping_add(rhs) } else { r }
            }
            fn rem_trunc(self, rhs: Self) -> Self { self.wrapping_rem(rhs) }
            fn pow(self, e: Self) -> Self {
                if (e as i128) < 0 {
                    Self::from_f64(self.to_f64().powf(e as f64))
                } else {
                    wrapping_pow(self, e as u128, 1, Self::wrapping_mul)
                }
            }
            fn pow_f64(self, e: f64) -> Self {
                if e >= 0.0 && e.fract() == 0.0 && e < 1e38 {
                    wrapping_pow(self, e as u128, 1, Self::wrapping_mul)
                } else {
                    Self::from_f64(self.to_f64().powf(e))
                }
            }
            fn max(self, rhs: Self) -> Self { Ord::max(self, rhs) }
            fn min(self, rhs: Self) -> Self { Ord::min(self, rhs) }
            fn abs(self) -> Self { if (self as i128) < 0 { self.wrapping_neg() } else { self } }
            fn neg(self) -> Self { self.wrapping_neg() }
            fn sign(self) -> Self { (self as i128).signum() as Self }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as Self }
        }

        impl Integer for $t {
            fn bit_and(self, rhs: Self) -> Self { self & rhs }
            fn bit_or(self, rhs: Self) -> Self { self | rhs }
            fn bit_xor(self, rhs: Self) -> Self { self ^ rhs }
            fn bit_not(self) -> Self { !self }
            fn shift_left(self, amount: Self) -> Self {
                match u32::try_from(amount as i128) {
                    Ok(n) if n < Self::BITS => self << n,
                    _ => 0,
                }
            }
            fn shift_right(self, amount: Self) -> Self {
                match u32::try_from(amount as i128) {
                    Ok(n) if n < Self::BITS => self >> n,
                    _ if (self as i128) < 0 => !0,
                    _ => 0,
                }
            }
        }
    )*};
}
integer!(u8, i8, u16, i16, u32, i32, u64, i64);

macro_rules! float {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const IS_INTEGER: bool = false;
            fn zero() -> Self { 0.0 }
            fn add(self, rhs: Self) -> Self { self + rhs }
            fn sub(self, rhs: Self) -> Self { self - rhs }
            fn mul(self, rhs: Self) -> Self { self * rhs }
            fn div(self, rhs: Self) -> Self { self / rhs }
            fn rem_floor(self, rhs: Self) -> Self { float_rem_floor(self, rhs) }
            fn rem_trunc(self, rhs: Self) -> Self { self % rhs }
            fn pow(self, e: Self) -> Self { self.powf(e) }
            fn pow_f64(self, e: f64) -> Self { (self as f64).powf(e) as Self }
            fn max(self, rhs: Self) -> Self { float_max(self, rhs) }
            fn min(self, rhs: Self) -> Self { float_min(self, rhs) }
            fn abs(self) -> Self { <$t>::abs(self) }
            fn neg(self) -> Self { -self }
            fn sign(self) -> Self { float_sign(self) }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as Self }
        }
    )*};
}
float!(f32, f64);

/// float16 and bfloat16: every operation through f32, rounded once.
macro_rules! half_float {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const IS_INTEGER: bool = false;
            fn zero() -> Self { <$t>::ZERO }
            fn add(self, rhs: Self) -> Self { Self::from_f32(self.to_f32() + rhs.to_f32()) }
            fn sub(self, rhs: Self) -> Self { Self::from_f32(self.to_f32() - rhs.to_f32()) }
            fn mul(self, rhs: Self) -> Self { Self::from_f32(self.to_f32() * rhs.to_f32()) }
            fn div(self, rhs: Self) -> Self { Self::from_f32(self.to_f32() / rhs.to_f32()) }
            fn rem_floor(self, rhs: Self) -> Self {
                Self::from_f32(float_rem_floor(self.to_f32(), rhs.to_f32()))
            }
            fn rem_trunc(self, rhs: Self) -> Self { Self::from_f32(self.to_f32() % rhs.to_f32()) }
            fn pow(self, e: Self) -> Self { Self::from_f32(self.to_f32().powf(e.to_f32())) }
            fn pow_f64(self, e: f64) -> Self { Self::from_f64(self.to_f64().powf(e)) }
            fn max(self, rhs: Self) -> Self { float_max(self, rhs) }
            fn min(self, rhs: Self) -> Self { float_min(self, rhs) }
            fn abs(self) -> Self { num_traits::Float::abs(self) }
            fn neg(self) -> Self { -self }
            fn sign(self) -> Self { float_sign(self) }
            fn to_f64(self) -> f64 { <$t>::to_f64(self) }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
        }
    )*};
}
half_float!(f16, bf16);

// ---------------------------------------------------------------------------------------------
// Type dispatch

/// A computation generic over the [`Numeric`] types.
pub(crate) trait NumericFn {
    type Out;
    fn call<T: Numeric>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`, or fails when `dtype` is not numeric.
pub(crate) fn with_numeric_type<F: NumericFn>(dtype: DataType, f: F) -> Result<F::Out, OpError> {
    use DataType as D;
    Ok(match dtype {
        D::Float => f.call::<f32>(),
        D::Double => f.call::<f64>(),
        D::Float16 => f.call::<f16>(),
        D::Bfloat16 => f.call::<bf16>(),
        D::Int8 => f.call::<i8>(),
        D::Int16 => f.call::<i16>(),
        D::Int32 => f.call::<i32>(),
        D::Int64 => f.call::<i64>(),
        D::Uint8 => f.call::<u8>(),
        D::Uint16 => f.call::<u16>(),
        D::Uint32 => f.call::<u32>(),
        D::Uint64 => f.call::<u64>(),
        other => return Err(unsupported(other)),
    })
}

/// A computation generic over the [`Integer`] types.
trait IntegerFn {
    type Out;
    fn call<T: Integer>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`, or fails when `dtype` is not an integer type.
fn with_integer_type<F: IntegerFn>(dtype: DataType, f: F) -> Result<F::Out, OpError> {
    use DataType as D;
    Ok(match dtype {
        D::Int8 => f.call::<i8>(),
        D::Int16 => f.call::<i16>(),
        D::Int32 => f.call::<i32>(),
        D::Int64 => f.call::<i64>(),
        D::Uint8 => f.call::<u8>(),
        D::Uint16 => f.call::<u16>(),
        D::Uint32 => f.call::<u32>(),
        D::Uint64 => f.call::<u64>(),
        other => return Err(unsupported(other)),
    })
}

pub(crate) fn unsupported(dtype: DataType) -> OpError {
    OpError::unsupported(format!("element type {dtype} is not supported"))
}

/// Both inputs of a binary op must share one element type.
fn same_dtype(a: &Tensor, b: &Tensor) -> Result<(), OpError> {
    if a.dtype() == b.dtype() {
        Ok(())
    } else {
        Err(OpError::input(
            1,
            format!("expected {} like input 0, got {}", a.dtype(), b.dtype()),
        ))
    }
}

/// The elements of `t` as `T` (the dispatch has already matched the type).
fn typed<T: Element>(t: &Tensor, index: usize) -> Result<&[T], OpError> {
    t.as_slice::<T>()
        .map_err(|_| OpError::input(index, format!("expected {}, got {}", T::DTYPE, t.dtype())))
}

fn output<T: Element>(shape: Shape, data: Vec<T>) -> Result<Tensor, OpError> {
    Ok(Tensor::from_vec(shape, data)?)
}

// ---------------------------------------------------------------------------------------------
// Opset < 7 broadcasting

/// Broadcasting before opset 7 (Add, Sub, Mul, Div, Pow, And, Or, Xor, Equal, Less, Greater):
/// without `broadcast=1` both shapes must be equal; with it, B's shape must match a contiguous
/// run of A's dimensions starting at `axis` (or A's trailing dimensions when `axis` is absent),
/// B's dimensions of size 1 repeating. The output has A's shape.
#[derive(Clone, Copy, Debug)]
struct LegacyBroadcast {
    enabled: bool,
    axis: Option<i64>,
}

impl LegacyBroadcast {
    /// The legacy rule when the node's opset predates multidirectional broadcasting.
    fn from_node(info: &NodeInfo) -> Result<Option<LegacyBroadcast>, OpError> {
        if info.opset >= 7 {
            return Ok(None);
        }
        Ok(Some(LegacyBroadcast {
            enabled: info.attr_int("broadcast", 0)? != 0,
            axis: info.attr_int_opt("axis")?,
        }))
    }

    /// B's shape padded with 1s to A's rank, ready for multidirectional broadcasting.
    fn b_shape(&self, a: &[usize], b: &[usize]) -> Result<Shape, OpError> {
        if !self.enabled {
            if a != b {
                return Err(OpError::invalid(format!(
                    "shapes {a:?} and {b:?} differ and attribute 'broadcast' is not set"
                )));
            }
            return Ok(b.into());
        }
        let (rank, b_rank) = (a.len() as i64, b.len() as i64);
        let axis = match self.axis {
            Some(axis) if axis < 0 => axis + rank,
            Some(axis) => axis,
            None => rank - b_rank,
        };
        if axis < 0 || axis + b_rank > rank {
            return Err(OpError::invalid(format!(
                "shape {b:?} cannot be broadcast to {a:?} at axis {axis}"
            )));
        }
        let axis = axis as usize;
        let mut shape: Shape = smallvec::smallvec![1; a.len()];
        shape[axis..axis + b.len()].copy_from_slice(b);
        if !is_broadcastable_to(&shape, a) {
            return Err(OpError::invalid(format!(
                "shape {b:?} cannot be broadcast to {a:?} at axis {axis}"
            )));
        }
        Ok(shape)
    }
}

/// The two operands of a binary op, with B's shape adjusted by the legacy rule when it applies.
fn operands<'a>(
    inputs: &'a Inputs,
    legacy: Option<LegacyBroadcast>,
) -> Result<(&'a Tensor, &'a Tensor, Shape), OpError> {
    let (a, b) = (inputs.tensor(0)?, inputs.tensor(1)?);
    let b_shape = match legacy {
        Some(rule) => rule.b_shape(a.shape(), b.shape())?,
        None => b.shape().into(),
    };
    Ok((a, b, b_shape))
}

// ---------------------------------------------------------------------------------------------
// Arithmetic: Add, Sub, Mul, Div, Mod

#[derive(Clone, Copy, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    /// Python-style `%` (`fmod` = 0) or C-style `fmod` (1).
    Mod {
        fmod: bool,
    },
}

/// ONNX Add, Sub, Mul, Div (opsets 1, 6, 7, 13, 14) and Mod (10, 13, 28).
/// Integer Div truncates toward zero; integer Div or Mod by zero is an error.
/// Mod follows the opset-28 text for every version: `fmod=0` is the floor remainder and
/// `fmod=1` the truncated one, for integers and floats alike.
struct ArithKernel {
    op: Arith,
    legacy: Option<LegacyBroadcast>,
}

fn arith(info: &NodeInfo, op: Arith) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ArithKernel {
        op,
        legacy: LegacyBroadcast::from_node(info)?,
    }))
}

fn build_mod(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let fmod = match info.attr_int("fmod", 0)? {
        0 => false,
        1 => true,
        other => {
            return Err(OpError::attribute(
                "fmod",
                format!("must be 0 or 1, got {other}"),
            ))
        }
    };
    Ok(Box::new(ArithKernel {
        op: Arith::Mod { fmod },
        legacy: None,
    }))
}

impl Kernel for ArithKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, b_shape) = operands(&inputs, self.legacy)?;
        same_dtype(a, b)?;
        let out = with_numeric_type(
            a.dtype(),
            ArithRun {
                op: self.op,
                a,
                b,
                b_shape: &b_shape,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct ArithRun<'a> {
    op: Arith,
    a: &'a Tensor,
    b: &'a Tensor,
    b_shape: &'a [usize],
}

impl NumericFn for ArithRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let (x, y) = (typed::<T>(self.a, 0)?, typed::<T>(self.b, 1)?);
        let (xs, ys) = (self.a.shape(), self.b_shape);
        let divides = matches!(self.op, Arith::Div | Arith::Mod { .. });
        if T::IS_INTEGER && divides && !x.is_empty() && y.iter().any(|v| *v == T::zero()) {
            return Err(OpError::input(1, "integer division by zero"));
        }
        let (shape, data) = match self.op {
            Arith::Add => binary_map(x, xs, y, ys, |p, q| p.add(*q)),
            Arith::Sub => binary_map(x, xs, y, ys, |p, q| p.sub(*q)),
            Arith::Mul => binary_map(x, xs, y, ys, |p, q| p.mul(*q)),
            Arith::Div => binary_map(x, xs, y, ys, |p, q| p.div(*q)),
            Arith::Mod { fmod: false } => binary_map(x, xs, y, ys, |p, q| p.rem_floor(*q)),
            Arith::Mod { fmod: true } => binary_map(x, xs, y, ys, |p, q| p.rem_trunc(*q)),
        }?;
        output(shape, data)
    }
}

// ---------------------------------------------------------------------------------------------
// Pow

/// ONNX Pow (opsets 1, 7, 12, 13, 15): the output has the base's type. A same-typed exponent
/// is applied directly (integers exactly, by squaring); an exponent of another type is
/// converted to f64 and the power computed in f64, as numpy promotes mixed types.
struct PowKernel {
    legacy: Option<LegacyBroadcast>,
}

fn build_pow(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(PowKernel {
        legacy: LegacyBroadcast::from_node(info)?,
    }))
}

impl Kernel for PowKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, b_shape) = operands(&inputs, self.legacy)?;
        let out = with_numeric_type(
            a.dtype(),
            PowRun {
                a,
                b,
                b_shape: &b_shape,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct PowRun<'a> {
    a: &'a Tensor,
    b: &'a Tensor,
    b_shape: &'a [usize],
}

impl NumericFn for PowRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let x = typed::<T>(self.a, 0)?;
        let (shape, data) = if self.b.dtype() == T::DTYPE {
            let e = typed::<T>(self.b, 1)?;
            binary_map(x, self.a.shape(), e, self.b_shape, |p, q| p.pow(*q))?
        } else {
            let e = with_numeric_type(self.b.dtype(), ToF64(self.b))??;
            binary_map(x, self.a.shape(), &e, self.b_shape, |p, q| p.pow_f64(*q))?
        };
        output(shape, data)
    }
}

/// A numeric tensor's elements as f64.
struct ToF64<'a>(&'a Tensor);

impl NumericFn for ToF64<'_> {
    type Out = Result<Vec<f64>, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        Ok(typed::<T>(self.0, 1)?.iter().map(|v| v.to_f64()).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Bitwise ops: BitShift, BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot

#[derive(Clone, Copy, Debug)]
enum Bitwise {
    And,
    Or,
    Xor,
    ShiftLeft,
    ShiftRight,
}

/// ONNX BitShift (opsets 11, 28; signed types from 28 shift arithmetically) and BitwiseAnd,
/// BitwiseOr, BitwiseXor (18), on every integer type.
struct BitwiseKernel {
    op: Bitwise,
}

fn bitwise(_info: &NodeInfo, op: Bitwise) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(BitwiseKernel { op }))
}

fn build_bitshift(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let op = match info.attr_string_opt("direction")?.as_deref() {
        Some("LEFT") => Bitwise::ShiftLeft,
        Some("RIGHT") => Bitwise::ShiftRight,
        Some(other) => {
            return Err(OpError::attribute(
                "direction",
                format!("must be LEFT or RIGHT, got '{other}'"),
            ))
        }
        None => return Err(OpError::attribute("direction", "is required")),
    };
    Ok(Box::new(BitwiseKernel { op }))
}

impl Kernel for BitwiseKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, b_shape) = operands(&inputs, None)?;
        same_dtype(a, b)?;
        let out = with_integer_type(
            a.dtype(),
            BitwiseRun {
                op: self.op,
                a,
                b,
                b_shape: &b_shape,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct BitwiseRun<'a> {
    op: Bitwise,
    a: &'a Tensor,
    b: &'a Tensor,
    b_shape: &'a [usize],
}

impl IntegerFn for BitwiseRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Integer>(self) -> Self::Out {
        let (x, y) = (typed::<T>(self.a, 0)?, typed::<T>(self.b, 1)?);
        let (xs, ys) = (self.a.shape(), self.b_shape);
        let (shape, data) = match self.op {
            Bitwise::And => binary_map(x, xs, y, ys, |p, q| p.bit_and(*q)),
            Bitwise::Or => binary_map(x, xs, y, ys, |p, q| p.bit_or(*q)),
            Bitwise::Xor => binary_map(x, xs, y, ys, |p, q| p.bit_xor(*q)),
            Bitwise::ShiftLeft => binary_map(x, xs, y, ys, |p, q| p.shift_left(*q)),
            Bitwise::ShiftRight => binary_map(x, xs, y, ys, |p, q| p.shift_right(*q)),
        }?;
        output(shape, data)
    }
}

/// ONNX BitwiseNot (opset 18), on every integer type; reuses the input buffer when it can.
struct BitwiseNotKernel;

impl Kernel for BitwiseNotKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        struct Not(Tensor);
        impl IntegerFn for Not {
            type Out = Result<Tensor, OpError>;
            fn call<T: Integer>(self) -> Self::Out {
                let shape: Shape = self.0.shape().into();
                let mut data = self.0.into_vec::<T>()?;
                data.iter_mut().for_each(|v| *v = v.bit_not());
                output(shape, data)
            }
        }
        let x = inputs.take_tensor(0)?;
        Ok(vec![with_integer_type(x.dtype(), Not(x))??.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Logic: And, Or, Xor, Not

#[derive(Clone, Copy, Debug)]
enum Logic {
    And,
    Or,
    Xor,
}

/// ONNX And, Or, Xor (opsets 1, 7) on bool tensors.
struct LogicKernel {
    op: Logic,
    legacy: Option<LegacyBroadcast>,
}

fn logic(info: &NodeInfo, op: Logic) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(LogicKernel {
        op,
        legacy: LegacyBroadcast::from_node(info)?,
    }))
}

impl Kernel for LogicKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, _, b_shape) = operands(&inputs, self.legacy)?;
        let (x, y) = (inputs.slice::<bool>(0)?, inputs.slice::<bool>(1)?);
        let (xs, ys) = (a.shape(), b_shape.as_slice());
        let (shape, data) = match self.op {
            Logic::And => binary_map(x, xs, y, ys, |p, q| *p && *q),
            Logic::Or => binary_map(x, xs, y, ys, |p, q| *p || *q),
            Logic::Xor => binary_map(x, xs, y, ys, |p, q| *p != *q),
        }?;
        Ok(vec![output(shape, data)?.into()])
    }
}

/// ONNX Not (opset 1) on bool tensors; reuses the input buffer when it can.
struct NotKernel;

impl Kernel for NotKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let shape: Shape = x.shape().into();
        let mut data = x
            .into_vec::<bool>()
            .map_err(|e| OpError::input(0, e.to_string()))?;
        data.iter_mut().for_each(|v| *v = !*v);
        Ok(vec![output(shape, data)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Comparisons: Equal, Less, Greater, LessOrEqual, GreaterOrEqual

#[derive(Clone, Copy, Debug)]
enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

/// ONNX Equal (opsets 1, 7, 11, 13, 19), Less and Greater (1, 7, 9, 13), LessOrEqual and
/// GreaterOrEqual (12, 16): bool outputs, on every numeric type, bool and string (strings
/// compare by code point). NaN compares unequal to everything.
struct CompareKernel {
    op: Compare,
    legacy: Option<LegacyBroadcast>,
}

fn compare(info: &NodeInfo, op: Compare) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(CompareKernel {
        op,
        legacy: LegacyBroadcast::from_node(info)?,
    }))
}

impl Kernel for CompareKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, b, b_shape) = operands(&inputs, self.legacy)?;
        same_dtype(a, b)?;
        let out = with_ord_type(
            a.dtype(),
            CompareRun {
                op: self.op,
                a,
                b,
                b_shape: &b_shape,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct CompareRun<'a> {
    op: Compare,
    a: &'a Tensor,
    b: &'a Tensor,
    b_shape: &'a [usize],
}

impl OrdFn for CompareRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Elem + PartialOrd>(self) -> Self::Out {
        let (x, y) = (typed::<T>(self.a, 0)?, typed::<T>(self.b, 1)?);
        let (xs, ys) = (self.a.shape(), self.b_shape);
        let (shape, data) = match self.op {
            Compare::Equal => binary_map(x, xs, y, ys, |p, q| p == q),
            Compare::Less => binary_map(x, xs, y, ys, |p, q| p < q),
            Compare::Greater => binary_map(x, xs, y, ys, |p, q| p > q),
            Compare::LessOrEqual => binary_map(x, xs, y, ys, |p, q| p <= q),
            Compare::GreaterOrEqual => binary_map(x, xs, y, ys, |p, q| p >= q),
        }?;
        output(shape, data)
    }
}

// ---------------------------------------------------------------------------------------------
// Variadic: Sum, Mean, Max, Min

#[derive(Clone, Copy, Debug)]
enum Variadic {
    Sum,
    Mean,
    Max,
    Min,
}

/// ONNX Sum and Mean (opsets 1, 6, 8, 13), Max and Min (1, 6, 8, 12, 13): one or more inputs,
/// broadcast together (versions before 8 require equal shapes, which broadcasting accepts).
/// Max and Min propagate NaN. Inputs fold left to right into one accumulator updated in place.
struct VariadicKernel {
    op: Variadic,
}

fn variadic(op: Variadic) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(VariadicKernel { op }))
}

impl Kernel for VariadicKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let tensors = (0..inputs.len())
            .map(|i| inputs.tensor(i))
            .collect::<Result<Vec<_>, _>>()?;
        let first = tensors
            .first()
            .ok_or_else(|| OpError::input(0, "is required but missing"))?;
        for (i, t) in tensors.iter().enumerate().skip(1) {
            if t.dtype() != first.dtype() {
                return Err(OpError::input(
                    i,
                    format!("expected {} like input 0, got {}", first.dtype(), t.dtype()),
                ));
            }
        }
        let out = with_numeric_type(
            first.dtype(),
            VariadicRun {
                op: self.op,
                tensors: &tensors,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct VariadicRun<'a> {
    op: Variadic,
    tensors: &'a [&'a Tensor],
}

impl VariadicRun<'_> {
    /// Folds every input with `f`, the first two into a fresh buffer and the others in place.
    fn fold<T: Numeric>(&self, f: impl Fn(&T, &T) -> T + Sync) -> Result<(Shape, Vec<T>), OpError> {
        let first = self.tensors[0];
        let mut shape: Shape = first.shape().into();
        let mut acc = typed::<T>(first, 0)?.to_vec();
        for (i, t) in self.tensors.iter().enumerate().skip(1) {
            let x = typed::<T>(t, i)?;
            if is_broadcastable_to(t.shape(), &shape) {
                binary_assign(&mut acc, &shape, x, t.shape(), &f)?;
            } else {
                broadcast_shapes(&[&shape, t.shape()])
                    .map_err(|e| OpError::input(i, e.to_string()))?;
                (shape, acc) = binary_map(&acc, &shape, x, t.shape(), &f)?;
            }
        }
        Ok((shape, acc))
    }
}

impl NumericFn for VariadicRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let (shape, data) = match self.op {
            Variadic::Sum => self.fold::<T>(|p, q| p.add(*q))?,
            Variadic::Max => self.fold::<T>(|p, q| p.max(*q))?,
            Variadic::Min => self.fold::<T>(|p, q| p.min(*q))?,
            Variadic::Mean => {
                let (shape, mut data) = self.fold::<T>(|p, q| p.add(*q))?;
                let n = T::from_f64(self.tensors.len() as f64);
                data.iter_mut().for_each(|v| *v = v.div(n));
                (shape, data)
            }
        };
        output(shape, data)
    }
}

// ---------------------------------------------------------------------------------------------
// Where

/// ONNX Where (opsets 9, 16): `condition ? X : Y` with all three broadcast, for every element
/// type.
struct WhereKernel;

impl Kernel for WhereKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let cond = inputs.tensor(0)?;
        let (x, y) = (inputs.tensor(1)?, inputs.tensor(2)?);
        if x.dtype() != y.dtype() {
            return Err(OpError::input(
                2,
                format!("expected {} like input 1, got {}", x.dtype(), y.dtype()),
            ));
        }
        let c = inputs.slice::<bool>(0)?;
        Ok(vec![with_any_type(
            x.dtype(),
            WhereRun {
                cond: (c, cond.shape()),
                x,
                y,
            },
        )?
        .into()])
    }
}

struct WhereRun<'a> {
    cond: (&'a [bool], &'a [usize]),
    x: &'a Tensor,
    y: &'a Tensor,
}

impl AnyFn for WhereRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let (x, y) = (typed::<T>(self.x, 1)?, typed::<T>(self.y, 2)?);
        let (shape, data) = ternary_map(
            self.cond,
            (x, self.x.shape()),
            (y, self.y.shape()),
            |c, p, q| if *c { p.clone() } else { q.clone() },
        )?;
        output(shape, data)
    }
}

// ---------------------------------------------------------------------------------------------
// PRelu

/// ONNX PRelu (opsets 1, 6, 7, 9, 16): `x < 0 ? slope * x : x`, the slope broadcast to X's shape
/// (unidirectionally). Before opset 7 the slope is either one value or, as in Caffe2, one value
/// per channel (dimension 1) given as a 1-D tensor.
struct PReluKernel {
    legacy: bool,
}

impl PReluKernel {
    /// The slope's shape as a broadcast to X's shape.
    fn slope_shape(&self, x: &[usize], slope: &[usize]) -> Result<Shape, OpError> {
        if self.legacy && slope.len() == 1 && x.len() >= 2 && slope[0] == x[1] && slope[0] > 1 {
            let mut shape: Shape = smallvec::smallvec![1; x.len() - 1];
            shape[0] = slope[0];
            return Ok(shape);
        }
        if self.legacy && slope.iter().product::<usize>() == 1 {
            return Ok(Shape::new());
        }
        if !is_broadcastable_to(slope, x) {
            return Err(OpError::input(
                1,
                format!("slope of shape {slope:?} does not broadcast to X of shape {x:?}"),
            ));
        }
        Ok(slope.into())
    }
}

impl Kernel for PReluKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, slope) = (inputs.tensor(0)?, inputs.tensor(1)?);
        same_dtype(x, slope)?;
        let slope_shape = self.slope_shape(x.shape(), slope.shape())?;
        let out = with_numeric_type(
            x.dtype(),
            PReluRun {
                x,
                slope,
                slope_shape: &slope_shape,
            },
        )??;
        Ok(vec![out.into()])
    }
}

struct PReluRun<'a> {
    x: &'a Tensor,
    slope: &'a Tensor,
    slope_shape: &'a [usize],
}

impl NumericFn for PReluRun<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let (x, s) = (typed::<T>(self.x, 0)?, typed::<T>(self.slope, 1)?);
        let (shape, data) = binary_map(x, self.x.shape(), s, self.slope_shape, |p, q| {
            if *p < T::zero() {
                p.mul(*q)
            } else {
                *p
            }
        })?;
        output(shape, data)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use runnx_ir::{Attribute, AttributeValue, Graph, Node};

    use super::*;
    use crate::{Subgraph, SubgraphCompiler};

    struct NoSubgraphs;
    impl SubgraphCompiler for NoSubgraphs {
        fn compile(&self, _: &Arc<Graph>) -> Result<Arc<dyn Subgraph>, OpError> {
            Err(OpError::unsupported("no subgraphs in unit tests"))
        }
    }

    /// Builds `op` at `opset` with `attrs` through the registry and runs it on `inputs`.
    pub(crate) fn run_op(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttributeValue)>,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, OpError> {
        let node = Node {
            name: String::new(),
            op_type: op.to_string(),
            domain: String::new(),
            inputs: (0..inputs.len()).map(|i| format!("in{i}")).collect(),
            outputs: vec!["out".to_string()],
            attributes: attrs
                .into_iter()
                .map(|(name, value)| Attribute {
                    name: name.to_string(),
                    value,
                    ref_attr_name: None,
                })
                .collect(),
            doc_string: String::new(),
        };
        let info = NodeInfo {
            node: &node,
            opset,
            constants: vec![None; inputs.len()],
            input_types: vec![None; inputs.len()],
            subgraphs: &NoSubgraphs,
        };
        let def = crate::registry()
            .lookup("", op, opset)
            .ok_or_else(|| OpError::unsupported(format!("{op} not registered at {opset}")))?;
        let kernel = (def.build)(&info)?;
        let values = inputs.into_iter().map(|t| Some(Value::Tensor(t))).collect();
        let outputs = kernel.run(Inputs::new(values))?;
        Ok(outputs
            .into_iter()
            .map(|v| v.into_tensor().expect("a tensor output"))
            .collect())
    }

    pub(crate) fn t<T: Element>(shape: &[usize], data: Vec<T>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), data).unwrap()
    }

    fn run1(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttributeValue)>,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        run_op(op, opset, attrs, inputs).unwrap().remove(0)
    }

    #[test]
    fn integer_division_truncates_and_rejects_zero() {
        let out = run1(
            "Div",
            14,
            vec![],
            vec![
                t(&[4], vec![-3i32, 3, -3, 3]),
                t(&[4], vec![2i32, 2, -2, -2]),
            ],
        );
        assert_eq!(out.as_slice::<i32>().unwrap(), &[-1, 1, 1, -1]);
        let err = run_op(
            "Div",
            14,
            vec![],
            vec![t(&[2], vec![1i64, 2]), t(&[2], vec![1i64, 0])],
        );
        assert!(err.is_err());
        let out = run1(
            "Div",
            14,
            vec![],
            vec![t(&[1], vec![i8::MIN]), t(&[1], vec![-1i8])],
        );
        assert_eq!(out.as_slice::<i8>().unwrap(), &[i8::MIN]);
        let out = run1(
            "Div",
            14,
            vec![],
            vec![t(&[2], vec![1.0f32, -1.0]), t(&[], vec![0.0f32])],
        );
        assert_eq!(
            out.as_slice::<f32>().unwrap(),
            &[f32::INFINITY, f32::NEG_INFINITY]
        );
    }

    #[test]
    fn mod_follows_the_divisor_or_the_dividend() {
        let x = t(&[6], vec![-4i64, 7, 5, 4, -7, 8]);
        let y = t(&[6], vec![2i64, -3, 8, -2, 3, 5]);
        let out = run1("Mod", 13, vec![], vec![x.clone(), y.clone()]);
        assert_eq!(out.as_slice::<i64>().unwrap(), &[0, -2, 5, 0, 2, 3]);
        let out = run1(
            "Mod",
            13,
            vec![("fmod", AttributeValue::Int(1))],
            vec![x, y],
        );
        assert_eq!(out.as_slice::<i64>().unwrap(), &[0, 1, 5, 0, -1, 3]);
        // numpy's float edge cases.
        let inf = f64::INFINITY;
        let x = t(
            &[8],
            vec![0.0f64, -0.0, -3.0, 3.0, inf, 1.0, f64::NAN, -1.0],
        );
        let y = t(&[8], vec![-2.0f64, 2.0, inf, inf, 2.0, 0.0, 2.0, -inf]);
        let out = run1("Mod", 13, vec![], vec![x, y]);
        let z = out.as_slice::<f64>().unwrap();
        assert!(z[0] == 0.0 && z[0].is_sign_negative());
        assert!(z[1] == 0.0 && z[1].is_sign_positive());
        assert_eq!(&z[2..4], &[inf, 3.0]);
        assert!(z[4].is_nan() && z[5].is_nan() && z[6].is_nan());
        assert_eq!(z[7], -1.0);
        assert!(run_op(
            "Mod",
            13,
            vec![],
            vec![t(&[1], vec![1u8]), t(&[1], vec![0u8])]
        )
        .is_err());
    }

    #[test]
    fn legacy_broadcast_aligns_at_axis() {
        let a = t(&[2, 3, 2], (0..12).map(|v| v as f32).collect());
        let b = t(&[3], vec![100.0f32, 200.0, 300.0]);
        let attrs = vec![
            ("broadcast", AttributeValue::Int(1)),
            ("axis", AttributeValue::Int(1)),
        ];
        let out = run1("Add", 6, attrs, vec![a.clone(), b.clone()]);
        assert_eq!(out.shape(), &[2, 3, 2]);
        assert_eq!(
            out.as_slice::<f32>().unwrap(),
            &[100., 101., 202., 203., 304., 305., 106., 107., 208., 209., 310., 311.]
        );
        // Suffix alignment without axis: [3] does not match the trailing [2].
        assert!(run_op(
            "Add",
            6,
            vec![("broadcast", AttributeValue::Int(1))],
            vec![a.clone(), b]
        )
        .is_err());
        // Without broadcast=1 the shapes must be equal.
        assert!(run_op(
            "Add",
            1,
            vec![],
            vec![a.clone(), t(&[2], vec![1.0f32, 2.0])]
        )
        .is_err());
        let out = run1("Sub", 1, vec![], vec![a.clone(), a]);
        assert!(out.as_slice::<f32>().unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn pow_with_mixed_types() {
        let out = run1(
            "Pow",
            15,
            vec![],
            vec![t(&[3], vec![1i64, 2, 3]), t(&[3], vec![4.0f32, 5.0, 0.5])],
        );
        assert_eq!(out.as_slice::<i64>().unwrap(), &[1, 32, 1]);
        let out = run1(
            "Pow",
            15,
            vec![],
            vec![t(&[3], vec![1.0f32, 2.0, 3.0]), t(&[], vec![2i64])],
        );
        assert_eq!(out.as_slice::<f32>().unwrap(), &[1.0, 4.0, 9.0]);
        let out = run1(
            "Pow",
            15,
            vec![],
            vec![t(&[2], vec![3i32, 2]), t(&[2], vec![4i32, 31])],
        );
        assert_eq!(out.as_slice::<i32>().unwrap(), &[81, i32::MIN]);
    }

    #[test]
    fn bit_shifts_saturate_out_of_range_amounts() {
        let right = || vec![("direction", AttributeValue::String(b"RIGHT".to_vec()))];
        let left = || vec![("direction", AttributeValue::String(b"LEFT".to_vec()))];
        let out = run1(
            "BitShift",
            11,
            right(),
            vec![t(&[3], vec![16u8, 4, 1]), t(&[3], vec![1u8, 2, 8])],
        );
        assert_eq!(out.as_slice::<u8>().unwrap(), &[8, 1, 0]);
        let out = run1(
            "BitShift",
            28,
            right(),
            vec![t(&[3], vec![-16i8, -1, 5]), t(&[3], vec![2i8, 9, -1])],
        );
        assert_eq!(out.as_slice::<i8>().unwrap(), &[-4, -1, 0]);
        let out = run1(
            "BitShift",
            28,
            left(),
            vec![t(&[3], vec![1i16, 3, 1]), t(&[3], vec![15i16, 1, 16])],
        );
        assert_eq!(out.as_slice::<i16>().unwrap(), &[i16::MIN, 6, 0]);
        assert!(run_op(
            "BitShift",
            11,
            vec![],
            vec![t(&[1], vec![1u8]), t(&[1], vec![1u8])]
        )
        .is_err());
    }

    #[test]
    fn comparisons_on_strings_and_nan() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let out = run1(
            "Equal",
            19,
            vec![],
            vec![
                t(&[2, 2], s(&["a", "b", "c", "a"])),
                t(&[2], s(&["a", "b"])),
            ],
        );
        assert_eq!(out.as_slice::<bool>().unwrap(), &[true, true, false, false]);
        let out = run1(
            "Less",
            13,
            vec![],
            vec![t(&[3], vec![1.0f32, f32::NAN, 3.0]), t(&[], vec![2.0f32])],
        );
        assert_eq!(out.as_slice::<bool>().unwrap(), &[true, false, false]);
        let out = run1(
            "GreaterOrEqual",
            16,
            vec![],
            vec![
                t(&[2], vec![f16::from_f32(2.0), f16::ONE]),
                t(&[1], vec![f16::from_f32(1.5)]),
            ],
        );
        assert_eq!(out.as_slice::<bool>().unwrap(), &[true, false]);
    }

    #[test]
    fn logic_and_not() {
        let out = run1(
            "Xor",
            7,
            vec![],
            vec![
                t(&[2, 2], vec![true, false, true, false]),
                t(&[2, 1], vec![true, false]),
            ],
        );
        assert_eq!(out.as_slice::<bool>().unwrap(), &[false, true, true, false]);
        let out = run1("Not", 1, vec![], vec![t(&[2], vec![true, false])]);
        assert_eq!(out.as_slice::<bool>().unwrap(), &[false, true]);
        let out = run1("BitwiseNot", 18, vec![], vec![t(&[2], vec![0u8, 5])]);
        assert_eq!(out.as_slice::<u8>().unwrap(), &[255, 250]);
    }

    #[test]
    fn variadic_ops_broadcast_and_propagate_nan() {
        let out = run1(
            "Sum",
            13,
            vec![],
            vec![
                t(&[3], vec![1.0f32, 2.0, 3.0]),
                t(&[2, 1], vec![10.0f32, 20.0]),
                t(&[], vec![100.0f32]),
            ],
        );
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(
            out.as_slice::<f32>().unwrap(),
            &[111., 112., 113., 121., 122., 123.]
        );
        let out = run1(
            "Mean",
            13,
            vec![],
            vec![t(&[2], vec![1.0f64, 2.0]), t(&[2], vec![3.0f64, 6.0])],
        );
        assert_eq!(out.as_slice::<f64>().unwrap(), &[2.0, 4.0]);
        let out = run1(
            "Max",
            13,
            vec![],
            vec![t(&[2], vec![1.0f32, f32::NAN]), t(&[2], vec![3.0f32, 0.0])],
        );
        let v = out.as_slice::<f32>().unwrap();
        assert!(v[0] == 3.0 && v[1].is_nan());
        let out = run1("Min", 13, vec![], vec![t(&[3], vec![5i8, -2, 7])]);
        assert_eq!(out.as_slice::<i8>().unwrap(), &[5, -2, 7]);
        assert!(run_op(
            "Sum",
            13,
            vec![],
            vec![t(&[2], vec![1.0f32, 2.0]), t(&[3], vec![1.0f32; 3])]
        )
        .is_err());
    }

    #[test]
    fn where_broadcasts_any_type() {
        let out = run1(
            "Where",
            16,
            vec![],
            vec![
                t(&[2, 1], vec![true, false]),
                t(&[2], vec![1i64, 2]),
                t(&[], vec![9i64]),
            ],
        );
        assert_eq!(out.as_slice::<i64>().unwrap(), &[1, 2, 9, 9]);
        let s = |v: &str| v.to_string();
        let out = run1(
            "Where",
            16,
            vec![],
            vec![
                t(&[2], vec![false, true]),
                t(&[2], vec![s("a"), s("b")]),
                t(&[2], vec![s("x"), s("y")]),
            ],
        );
        assert_eq!(out.as_slice::<String>().unwrap(), &[s("x"), s("b")]);
    }

    #[test]
    fn prelu_slopes() {
        let x = t(&[1, 2, 2], vec![-1.0f32, 2.0, -3.0, 4.0]);
        let out = run1(
            "PRelu",
            16,
            vec![],
            vec![x.clone(), t(&[2, 1], vec![0.5f32, 0.1])],
        );
        assert_eq!(out.as_slice::<f32>().unwrap(), &[-0.5, 2.0, -0.3, 4.0]);
        // opset 6: a 1-D slope is per channel (dimension 1)
        let out = run1(
            "PRelu",
            6,
            vec![],
            vec![x.clone(), t(&[2], vec![0.5f32, 0.1])],
        );
        assert_eq!(out.as_slice::<f32>().unwrap(), &[-0.5, 2.0, -0.3, 4.0]);
        // opset 9: the same slope aligns with the last dimension instead
        let out = run1(
            "PRelu",
            9,
            vec![],
            vec![x.clone(), t(&[2], vec![0.5f32, 0.1])],
        );
        assert_eq!(out.as_slice::<f32>().unwrap(), &[-0.5, 2.0, -1.5, 4.0]);
        assert!(run_op("PRelu", 9, vec![], vec![x, t(&[3], vec![0.5f32; 3])]).is_err());
    }

    #[test]
    fn mismatched_types_are_errors() {
        assert!(run_op(
            "Add",
            14,
            vec![],
            vec![t(&[1], vec![1.0f32]), t(&[1], vec![1.0f64])]
        )
        .is_err());
        assert!(run_op(
            "Add",
            14,
            vec![],
            vec![t(&[1], vec![true]), t(&[1], vec![true])]
        )
        .is_err());
        assert!(run_op(
            "Add",
            14,
            vec![],
            vec![t(&[2], vec![1.0f32, 2.0]), t(&[3], vec![1.0f32; 3])]
        )
        .is_err());
    }
}
