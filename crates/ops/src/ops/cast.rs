//! Cast and CastLike: conversion between any two element types.
//!
//! Every source element is first read as a [`Scalar`], which holds any value of any real type
//! exactly (an `i128` for the integer types and bool, an `f64` for the float types), then
//! converted to the target type by one rule per target. After inlining, the `Scalar` match
//! disappears from the loop: each of the source x target pairs is a plain conversion loop.
//!
//! The rules, from the ONNX spec where it defines them and from onnxruntime (C++ `static_cast`
//! on x86-64) where it leaves them undefined:
//! - integer to integer: keep the low bits (two's complement), e.g. int16 200 -> int8 -56;
//!   this never goes through a float, so int64 -> int32 is an exact wrap.
//! - integer to float: one correct rounding (`i64 as f32` in Rust, like the C++ cast).
//! - float to float: one rounding to nearest even; the float8 types follow the spec's tables
//!   (`saturate`, see `runnx_ir::scalar`), float8e8m0 also `round_mode`.
//! - float to integer: truncation toward zero; NaN and out-of-range values give what x86's
//!   `cvttss2si` gives (the most negative 32- or 64-bit integer, then truncated to the target's
//!   width), as onnxruntime and numpy do. int4/uint4/int2/uint2 follow the reference (`ml_dtypes`):
//!   truncate then wrap, NaN and values outside the i32 range give 0.
//! - to bool: zero (either sign) is false, anything else (NaN included) true.
//! - to string: integers in decimal, bool as `1`/`0`, floats as C's `%.8g` with `NaN`, `INF`,
//!   `-INF` (onnxruntime's output). From string: integers, decimal or scientific floats, and the
//!   case-insensitive literals `INF`, `+INF`, `-INF`, `NaN` (plus `true`/`false` for bool);
//!   a float string cast to an integer truncates. Anything else is an error.
//! - complex: only complex to complex and real to complex (imaginary part 0); the spec defines no
//!   cast from complex.

use half::{bf16, f16};
use num_complex::Complex;
use rayon::prelude::*;
use runnx_ir::scalar::{
    E8M0Round, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};
use runnx_ir::{AttributeValue, DataType, Element, Tensor, TensorData, Value};

use crate::kernels::broadcast::PARALLEL_MIN_LEN;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions(
        "",
        "Cast",
        &[1, 6, 9, 13, 19, 21, 23, 24, 25, 28],
        build_cast,
    );
    reg.add_versions("", "CastLike", &[15, 19, 21, 23, 24, 25], build_cast_like);
}

/// How conversions to the float8 types round and overflow (`saturate`, `round_mode`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CastOptions {
    /// Out-of-range values become the largest finite value rather than NaN/inf (float8 only).
    pub saturate: bool,
    /// Rounding of conversions to float8e8m0.
    pub round: E8M0Round,
}

impl Default for CastOptions {
    fn default() -> Self {
        CastOptions {
            saturate: true,
            round: E8M0Round::Up,
        }
    }
}

impl CastOptions {
    fn from_node(info: &NodeInfo) -> Result<CastOptions, OpError> {
        let mode = info.attr_string("round_mode", "up")?;
        Ok(CastOptions {
            saturate: info.attr_int("saturate", 1)? != 0,
            round: E8M0Round::parse(&mode).ok_or_else(|| {
                OpError::attribute(
                    "round_mode",
                    format!("must be up, down or nearest, got '{mode}'"),
                )
            })?,
        })
    }
}

/// ONNX Cast (opsets 1 to 28): `to` is an element-type code (a type name such as `FLOAT` in
/// opset 1); `saturate` from 19 and `round_mode` from 24 apply to the float8 targets.
struct CastKernel {
    to: DataType,
    options: CastOptions,
}

fn build_cast(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let to = match info.attr_value("to") {
        Some(AttributeValue::Int(code)) => i32::try_from(*code).ok().and_then(DataType::from_onnx),
        Some(AttributeValue::String(name)) => {
            DataType::from_name(&String::from_utf8_lossy(name).to_lowercase())
        }
        Some(other) => {
            return Err(OpError::attribute(
                "to",
                format!("expected int, got {}", other.kind()),
            ))
        }
        None => return Err(OpError::attribute("to", "is required")),
    }
    .ok_or_else(|| OpError::attribute("to", "is not a supported element type"))?;
    Ok(Box::new(CastKernel {
        to,
        options: CastOptions::from_node(info)?,
    }))
}

impl Kernel for CastKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        Ok(vec![
            cast_tensor(inputs.tensor(0)?, self.to, self.options)?.into()
        ])
    }
}

/// ONNX CastLike (opsets 15 to 25): Cast to the element type of the second input.
struct CastLikeKernel {
    options: CastOptions,
}

fn build_cast_like(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(CastLikeKernel {
        options: CastOptions::from_node(info)?,
    }))
}

impl Kernel for CastLikeKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let to = inputs.tensor(1)?.dtype();
        Ok(vec![
            cast_tensor(inputs.tensor(0)?, to, self.options)?.into()
        ])
    }
}

/// `x` converted to element type `to` (see the module docs for the rules). A cast to the same
/// type shares the buffer.
pub(crate) fn cast_tensor(
    x: &Tensor,
    to: DataType,
    options: CastOptions,
) -> Result<Tensor, OpError> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    let o = options;
    let data = match x.data() {
        TensorData::Float(v) => cast_slice(v, to, o),
        TensorData::Double(v) => cast_slice(v, to, o),
        TensorData::Float16(v) => cast_slice(v, to, o),
        TensorData::Bfloat16(v) => cast_slice(v, to, o),
        TensorData::Int8(v) => cast_slice(v, to, o),
        TensorData::Int16(v) => cast_slice(v, to, o),
        TensorData::Int32(v) => cast_slice(v, to, o),
        TensorData::Int64(v) => cast_slice(v, to, o),
        TensorData::Uint8(v) => cast_slice(v, to, o),
        TensorData::Uint16(v) => cast_slice(v, to, o),
        TensorData::Uint32(v) => cast_slice(v, to, o),
        TensorData::Uint64(v) => cast_slice(v, to, o),
        TensorData::Bool(v) => cast_slice(v, to, o),
        TensorData::Float8E4M3FN(v) => cast_slice(v, to, o),
        TensorData::Float8E4M3FNUZ(v) => cast_slice(v, to, o),
        TensorData::Float8E5M2(v) => cast_slice(v, to, o),
        TensorData::Float8E5M2FNUZ(v) => cast_slice(v, to, o),
        TensorData::Float8E8M0(v) => cast_slice(v, to, o),
        TensorData::Float4E2M1(v) => cast_slice(v, to, o),
        TensorData::Int4(v) => cast_slice(v, to, o),
        TensorData::Uint4(v) => cast_slice(v, to, o),
        TensorData::Int2(v) => cast_slice(v, to, o),
        TensorData::Uint2(v) => cast_slice(v, to, o),
        TensorData::String(v) => {
            let parsed = v.iter().map(|s| parse(s)).collect::<Result<Vec<_>, _>>()?;
            cast_slice(&parsed, to, o)
        }
        TensorData::Complex64(v) => cast_complex(v, to),
        TensorData::Complex128(v) => cast_complex(v, to),
    }?;
    Ok(Tensor::new(x.shape().to_vec(), data)?)
}

/// A value of any real element type, exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    /// The integer types and bool.
    Int(i128),
    /// The float types.
    Float(f64),
}

/// A source element type: its value as a [`Scalar`].
trait CastSource: Copy + Send + Sync {
    fn scalar(self) -> Scalar;
}

/// A target element type: the conversion of a [`Scalar`] to it.
trait CastTarget: Element {
    fn from_scalar(v: Scalar, options: CastOptions) -> Self;
}

/// Strings are parsed once into scalars, which then convert like any other source.
impl CastSource for Scalar {
    fn scalar(self) -> Scalar {
        self
    }
}

impl CastSource for bool {
    fn scalar(self) -> Scalar {
        Scalar::Int(self as i128)
    }
}

impl CastTarget for bool {
    fn from_scalar(v: Scalar, _: CastOptions) -> bool {
        match v {
            Scalar::Int(i) => i != 0,
            Scalar::Float(x) => x != 0.0,
        }
    }
}

/// Float to integer as `cvttsd2si` with a 32-bit destination: truncation toward zero; NaN and
/// out-of-range values give `i32::MIN`.
fn truncate_i32(x: f64) -> i32 {
    if x > -2_147_483_649.0 && x < 2_147_483_648.0 {
        x as i32
    } else {
        i32::MIN
    }
}

/// [`truncate_i32`] with a 64-bit destination.
fn truncate_i64(x: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if (-LIMIT..LIMIT).contains(&x) {
        x as i64
    } else {
        i64::MIN
    }
}

/// Float to u64 as x86-64 compilers lower it: values in `[2^63, 2^64)` exactly, the rest as
/// [`truncate_i64`].
fn truncate_u64(x: f64) -> u64 {
    if (9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&x) {
        x as u64
    } else {
        truncate_i64(x) as u64
    }
}

/// The integer types; `$truncate` is the float conversion the C++ cast compiles to for the type.
macro_rules! integer {
    ($($t:ty => $truncate:expr),* $(,)?) => {$(
        impl CastSource for $t {
            fn scalar(self) -> Scalar {
                Scalar::Int(self as i128)
            }
        }

        impl CastTarget for $t {
            fn from_scalar(v: Scalar, _: CastOptions) -> $t {
                match v {
                    Scalar::Int(i) => i as $t,
                    Scalar::Float(x) => $truncate(x) as $t,
                }
            }
        }
    )*};
}
integer! {
    i8 => truncate_i32,
    u8 => truncate_i32,
    i16 => truncate_i32,
    u16 => truncate_i32,
    i32 => truncate_i32,
    u32 => truncate_i64,
    i64 => truncate_i64,
    u64 => truncate_u64,
}

macro_rules! float {
    ($($t:ty),*) => {$(
        impl CastSource for $t {
            fn scalar(self) -> Scalar {
                Scalar::Float(self as f64)
            }
        }

        impl CastTarget for $t {
            fn from_scalar(v: Scalar, _: CastOptions) -> $t {
                match v {
                    Scalar::Int(i) => i as $t,
                    Scalar::Float(x) => x as $t,
                }
            }
        }
    )*};
}
float!(f32, f64);

macro_rules! half_float {
    ($($t:ty),*) => {$(
        impl CastSource for $t {
            fn scalar(self) -> Scalar {
                Scalar::Float(self.to_f64())
            }
        }

        impl CastTarget for $t {
            fn from_scalar(v: Scalar, _: CastOptions) -> $t {
                match v {
                    Scalar::Int(i) => <$t>::from_f64(i as f64),
                    Scalar::Float(x) => <$t>::from_f64(x),
                }
            }
        }
    )*};
}
half_float!(f16, bf16);

/// The float8 and float4 types. Like the reference and onnxruntime, a double rounds to f32 first.
macro_rules! small_float {
    ($($t:ty),*) => {$(
        impl CastSource for $t {
            fn scalar(self) -> Scalar {
                Scalar::Float(self.to_f64())
            }
        }

        impl CastTarget for $t {
            fn from_scalar(v: Scalar, options: CastOptions) -> $t {
                let x = match v {
                    Scalar::Int(i) => i as f32,
                    Scalar::Float(x) => x as f32,
                };
                <$t>::from_f32(x, options.saturate)
            }
        }
    )*};
}
small_float!(F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F4E2M1);

impl CastSource for F8E8M0 {
    fn scalar(self) -> Scalar {
        Scalar::Float(self.to_f64())
    }
}

impl CastTarget for F8E8M0 {
    fn from_scalar(v: Scalar, options: CastOptions) -> F8E8M0 {
        let x = match v {
            Scalar::Int(i) => i as f32,
            Scalar::Float(x) => x as f32,
        };
        F8E8M0::from_f32_round(x, options.saturate, options.round)
    }
}

macro_rules! small_int {
    ($($t:ty),*) => {$(
        impl CastSource for $t {
            fn scalar(self) -> Scalar {
                Scalar::Int(self.to_i64() as i128)
            }
        }

        impl CastTarget for $t {
            fn from_scalar(v: Scalar, _: CastOptions) -> $t {
                match v {
                    Scalar::Int(i) => <$t>::new_wrapping(i as i64),
                    Scalar::Float(x) => <$t>::from_f64_cast(x),
                }
            }
        }
    )*};
}
small_int!(I4, U4, I2, U2);

macro_rules! complex {
    ($($t:ty),*) => {$(
        impl CastTarget for Complex<$t> {
            fn from_scalar(v: Scalar, _: CastOptions) -> Complex<$t> {
                let re = match v {
                    Scalar::Int(i) => i as $t,
                    Scalar::Float(x) => x as $t,
                };
                Complex::new(re, 0.0)
            }
        }
    )*};
}
complex!(f32, f64);

impl CastTarget for String {
    fn from_scalar(v: Scalar, _: CastOptions) -> String {
        match v {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(x) => format_float(x),
        }
    }
}

/// A float as C's `printf("%.8g")` writes it (onnxruntime's float-to-string cast), with `NaN`,
/// `INF` and `-INF` for the special values.
fn format_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-INF" } else { "INF" }.to_string();
    }
    const PRECISION: i32 = 8;
    // The decimal exponent after rounding to 8 significant digits decides the notation.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, x);
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return x.to_string();
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= PRECISION {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mantissa), exponent.abs())
    } else {
        let fixed = format!("{:.*}", (PRECISION - 1 - exponent) as usize, x);
        trim_fraction(&fixed).to_string()
    }
}

/// Drops trailing zeros of a fraction, and the point if nothing remains after it.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A string element as a number (see the module docs).
fn parse(s: &str) -> Result<Scalar, OpError> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i128>() {
        return Ok(if i == 0 && t.starts_with('-') {
            Scalar::Float(-0.0)
        } else {
            Scalar::Int(i)
        });
    }
    if let Ok(x) = t.parse::<f64>() {
        return Ok(Scalar::Float(x));
    }
    if t.eq_ignore_ascii_case("true") {
        return Ok(Scalar::Int(1));
    }
    if t.eq_ignore_ascii_case("false") {
        return Ok(Scalar::Int(0));
    }
    Err(OpError::input(0, format!("cannot parse '{s}' as a number")))
}

/// Converts `src` to the element type `to`.
fn cast_slice<S: CastSource>(
    src: &[S],
    to: DataType,
    o: CastOptions,
) -> Result<TensorData, OpError> {
    use DataType as D;
    Ok(match to {
        D::Float => convert::<S, f32>(src, o),
        D::Double => convert::<S, f64>(src, o),
        D::Float16 => convert::<S, f16>(src, o),
        D::Bfloat16 => convert::<S, bf16>(src, o),
        D::Int8 => convert::<S, i8>(src, o),
        D::Int16 => convert::<S, i16>(src, o),
        D::Int32 => convert::<S, i32>(src, o),
        D::Int64 => convert::<S, i64>(src, o),
        D::Uint8 => convert::<S, u8>(src, o),
        D::Uint16 => convert::<S, u16>(src, o),
        D::Uint32 => convert::<S, u32>(src, o),
        D::Uint64 => convert::<S, u64>(src, o),
        D::Bool => convert::<S, bool>(src, o),
        D::String => convert::<S, String>(src, o),
        D::Float8E4M3FN => convert::<S, F8E4M3FN>(src, o),
        D::Float8E4M3FNUZ => convert::<S, F8E4M3FNUZ>(src, o),
        D::Float8E5M2 => convert::<S, F8E5M2>(src, o),
        D::Float8E5M2FNUZ => convert::<S, F8E5M2FNUZ>(src, o),
        D::Float8E8M0 => convert::<S, F8E8M0>(src, o),
        D::Float4E2M1 => convert::<S, F4E2M1>(src, o),
        D::Int4 => convert::<S, I4>(src, o),
        D::Uint4 => convert::<S, U4>(src, o),
        D::Int2 => convert::<S, I2>(src, o),
        D::Uint2 => convert::<S, U2>(src, o),
        D::Complex64 => convert::<S, Complex<f32>>(src, o),
        D::Complex128 => convert::<S, Complex<f64>>(src, o),
    })
}

/// The conversion loop of one source and target type; parallel for large inputs.
fn convert<S: CastSource, D: CastTarget>(src: &[S], o: CastOptions) -> TensorData {
    let one = |s: &S| D::from_scalar(s.scalar(), o);
    let out: Vec<D> = if src.len() < PARALLEL_MIN_LEN {
        src.iter().map(one).collect()
    } else {
        src.par_iter()
            .with_min_len(PARALLEL_MIN_LEN / 2)
            .map(one)
            .collect()
    };
    D::wrap(out)
}

/// Complex sources: only complex64 <-> complex128 is defined.
fn cast_complex<T>(src: &[Complex<T>], to: DataType) -> Result<TensorData, OpError>
where
    T: Copy + Into<f64>,
{
    let wide = |c: &Complex<T>| (c.re.into(), c.im.into());
    Ok(match to {
        DataType::Complex64 => TensorData::Complex64(
            src.iter()
                .map(wide)
                .map(|(re, im): (f64, f64)| Complex::new(re as f32, im as f32))
                .collect(),
        ),
        DataType::Complex128 => TensorData::Complex128(
            src.iter()
                .map(wide)
                .map(|(re, im)| Complex::new(re, im))
                .collect(),
        ),
        other => {
            return Err(OpError::unsupported(format!(
                "Cast from a complex type to {other} is not defined by ONNX"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast<S: Element, D: Element + Clone>(src: Vec<S>, to: DataType) -> Vec<D> {
        cast_with(src, to, CastOptions::default())
    }

    fn cast_with<S: Element, D: Element + Clone>(
        src: Vec<S>,
        to: DataType,
        o: CastOptions,
    ) -> Vec<D> {
        let x = Tensor::from_vec([src.len()], src).unwrap();
        cast_tensor(&x, to, o)
            .unwrap()
            .as_slice::<D>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn integers_wrap_exactly() {
        assert_eq!(
            cast::<i16, i8>(vec![200, -129, 5], DataType::Int8),
            vec![-56, 127, 5]
        );
        let big = i64::MAX - 1;
        assert_eq!(
            cast::<i64, i32>(vec![big, 1 << 40, -1], DataType::Int32),
            vec![-2, 0, -1]
        );
        assert_eq!(cast::<i64, u64>(vec![-1], DataType::Uint64), vec![u64::MAX]);
        assert_eq!(
            cast::<u64, f32>(vec![u64::MAX], DataType::Float),
            vec![u64::MAX as f32]
        );
        assert_eq!(
            cast::<i64, f64>(vec![(1 << 53) + 1], DataType::Double),
            vec![9007199254740992.0]
        );
        assert_eq!(
            cast::<i32, bool>(vec![0, 36, -1], DataType::Bool),
            vec![false, true, true]
        );
        assert_eq!(
            cast::<bool, f32>(vec![true, false], DataType::Float),
            vec![1.0, 0.0]
        );
    }

    #[test]
    fn floats_truncate_like_x86() {
        let x = vec![2.9f32, -2.9, 300.0, f32::NAN, 3e9, -1.0];
        assert_eq!(
            cast::<f32, i32>(x.clone(), DataType::Int32),
            vec![2, -2, 300, i32::MIN, i32::MIN, -1]
        );
        assert_eq!(
            cast::<f32, u8>(x.clone(), DataType::Uint8),
            vec![2, 254, 44, 0, 0, 255]
        );
        assert_eq!(
            cast::<f32, u32>(x.clone(), DataType::Uint32),
            vec![2, 4294967294, 300, 0, 3_000_000_000, u32::MAX]
        );
        assert_eq!(
            cast::<f32, i64>(vec![f32::INFINITY, -7.5], DataType::Int64),
            vec![i64::MIN, -7]
        );
        assert_eq!(
            cast::<f64, u64>(vec![1.8e19, -1.0], DataType::Uint64),
            vec![18_000_000_000_000_000_000, u64::MAX]
        );
        assert_eq!(
            cast::<f32, bool>(vec![0.0, -0.0, f32::NAN, 0.1], DataType::Bool),
            vec![false, false, true, true]
        );
    }

    #[test]
    fn sub_byte_integers_wrap() {
        // The conformance data: int4 of -9..15 wraps.
        let x: Vec<f32> = (-9..16).map(|v| v as f32).collect();
        let out: Vec<I4> = cast(x.clone(), DataType::Int4);
        let want: Vec<i8> = (-9..16)
            .map(|v: i32| (((v & 0xF) << 4) as i8) >> 4)
            .collect();
        assert_eq!(out.iter().map(|v| v.0).collect::<Vec<_>>(), want);
        let out: Vec<U4> = cast(x, DataType::Uint4);
        assert_eq!(
            out.iter().map(|v| v.0 as i32).collect::<Vec<_>>(),
            (-9..16).map(|v: i32| v & 0xF).collect::<Vec<_>>()
        );
        let out: Vec<i8> = cast(vec![I2(-2), I2(1)], DataType::Int8);
        assert_eq!(out, vec![-2, 1]);
    }

    #[test]
    fn float8_saturation() {
        let x = vec![1e6f32, f32::INFINITY, 0.47892547];
        let sat: Vec<F8E4M3FN> = cast(x.clone(), DataType::Float8E4M3FN);
        assert_eq!(sat[0].to_f32(), 448.0);
        assert_eq!(sat[1].to_f32(), 448.0);
        assert_eq!(sat[2].to_f32(), 0.46875);
        let o = CastOptions {
            saturate: false,
            ..CastOptions::default()
        };
        let nosat: Vec<F8E5M2> = cast_with(x, DataType::Float8E5M2, o);
        assert_eq!(nosat[0].to_f32(), f32::INFINITY);
        let back: Vec<f16> = cast(vec![F8E4M3FN::from_f32(-3.5, true)], DataType::Float16);
        assert_eq!(back[0].to_f32(), -3.5);
        let e8: Vec<F8E8M0> = cast(vec![0.124f32, 1.1, 4.0], DataType::Float8E8M0);
        assert_eq!(
            e8.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
            vec![0.125, 2.0, 4.0]
        );
    }

    #[test]
    fn strings_both_ways() {
        let x = vec![
            0.47892547f32,
            1e-7,
            1e6,
            123456789.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.1,
        ];
        let out: Vec<String> = cast(x, DataType::String);
        assert_eq!(
            out,
            vec![
                "0.47892547",
                "1e-07",
                "1000000",
                "1.2345679e+08",
                "NaN",
                "INF",
                "-INF",
                "-0",
                "0.1"
            ]
        );
        assert_eq!(
            cast::<i64, String>(vec![-5, i64::MAX], DataType::String),
            vec!["-5", "9223372036854775807"]
        );
        assert_eq!(
            cast::<bool, String>(vec![true, false], DataType::String),
            vec!["1", "0"]
        );
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let out: Vec<f32> = cast(
            s(&["3.14", "1e-5", "1E8", "+INF", "-inf", " 7 "]),
            DataType::Float,
        );
        assert_eq!(
            out,
            vec![3.14, 1e-5, 1e8, f32::INFINITY, f32::NEG_INFINITY, 7.0]
        );
        let out: Vec<f32> = cast(s(&["NaN"]), DataType::Float);
        assert!(out[0].is_nan());
        let out: Vec<i64> = cast(s(&["100.5", "-3", "18446744073709551615"]), DataType::Int64);
        assert_eq!(out, vec![100, -3, -1]);
        let out: Vec<bool> = cast(s(&["0", "1", "true", "False"]), DataType::Bool);
        assert_eq!(out, vec![false, true, true, false]);
        let x = Tensor::from_vec([1], s(&["Hello"])).unwrap();
        assert!(cast_tensor(&x, DataType::Float, CastOptions::default()).is_err());
    }

    #[test]
    fn complex_only_to_complex() {
        let out: Vec<Complex<f64>> = cast(vec![1.5f32], DataType::Complex128);
        assert_eq!(out, vec![Complex::new(1.5, 0.0)]);
        let out: Vec<Complex<f32>> = cast(vec![Complex::new(1.0f64, -2.0)], DataType::Complex64);
        assert_eq!(out, vec![Complex::new(1.0f32, -2.0)]);
        let x = Tensor::from_vec([1], vec![Complex::new(1.0f32, 0.0)]).unwrap();
        assert!(cast_tensor(&x, DataType::Float, CastOptions::default()).is_err());
    }

    #[test]
    fn every_pair_of_real_types_converts() {
        let real: Vec<DataType> = DataType::ALL
            .iter()
            .copied()
            .filter(|d| !d.is_complex())
            .collect();
        for &from in &real {
            let one = cast_tensor(&Tensor::scalar(1i64), from, CastOptions::default()).unwrap();
            for &to in &real {
                let y = cast_tensor(&one, to, CastOptions::default()).unwrap();
                assert_eq!(y.dtype(), to);
                // 1 is exact in every real type.
                let back = cast_tensor(&y, DataType::Double, CastOptions::default()).unwrap();
                assert_eq!(back.as_slice::<f64>().unwrap(), &[1.0], "{from} -> {to}");
            }
        }
    }

    #[test]
    fn cast_node_attributes() {
        use crate::ops::elementwise::tests::{run_op, t};
        let out = run_op(
            "Cast",
            1,
            vec![("to", AttributeValue::String(b"FLOAT16".to_vec()))],
            vec![t(&[1], vec![1.5f32])],
        )
        .unwrap();
        assert_eq!(out[0].dtype(), DataType::Float16);
        let out = run_op(
            "Cast",
            13,
            vec![("to", AttributeValue::Int(7))],
            vec![t(&[1], vec![1.5f32])],
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<i64>().unwrap(), &[1]);
        let out = run_op(
            "CastLike",
            15,
            vec![],
            vec![t(&[1], vec![2i32]), t(&[0], Vec::<f64>::new())],
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<f64>().unwrap(), &[2.0]);
        assert!(run_op(
            "Cast",
            13,
            vec![("to", AttributeValue::Int(0))],
            vec![t(&[1], vec![1.5f32])]
        )
        .is_err());
        assert!(run_op("Cast", 13, vec![], vec![t(&[1], vec![1.5f32])]).is_err());
        let bad_mode = vec![
            ("to", AttributeValue::Int(24)),
            ("round_mode", AttributeValue::String(b"odd".to_vec())),
        ];
        assert!(run_op("Cast", 25, bad_mode, vec![t(&[1], vec![1.5f32])]).is_err());
    }
}
