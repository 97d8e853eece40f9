//! Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the
//! quantized products QLinearMatMul and QLinearConv.
//!
//! Quantizing maps a real `x` to `saturate(x / scale + zero_point)`: integer types round half
//! to even and clamp to their range; the small float types (float8, float4) round to nearest
//! even and saturate or not as asked. Dequantizing computes `(x - zero_point) · scale`.
//!
//! Arithmetic is done in `f64`, then rounded once to the precision the spec (or the reference
//! implementation, where the spec is silent) computes in: the division `x / scale` is rounded to
//! the division type (see [`Precision`]), which gives the correctly rounded quotient of that type
//! because `f64` has more than twice its significand bits. Integer products (QLinearMatMul,
//! QLinearConv) are exact in `f64` while their sums stay below 2^53.

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;
use runnx_ir::scalar::{F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
use runnx_ir::{DataType, Element, Tensor, TensorData, Value};

use super::conv::IntegerConv;
use super::matmul::MatMulPlan;
use super::shape::normalize_axis;
use crate::kernels::broadcast::PARALLEL_MIN_LEN;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    let versions = [10, 13, 19, 21, 23, 24, 25, 28];
    reg.add_versions("", "QuantizeLinear", &versions, build_quantize);
    reg.add_versions("", "DequantizeLinear", &versions, build_dequantize);
    reg.add("", "DynamicQuantizeLinear", 11, |_| {
        Ok(Box::new(DynamicQuantizeLinear))
    });
    reg.add_versions("", "QLinearMatMul", &[10, 21], |_| {
        Ok(Box::new(QLinearMatMul))
    });
    reg.add("", "QLinearConv", 10, |info| {
        Ok(Box::new(QLinearConv(IntegerConv::parse(info)?)))
    });
}

// ---------------------------------------------------------------------------------------------
// Element types

/// A quantized element type: what QuantizeLinear produces and DequantizeLinear reads.
trait Quantized: Element + Copy {
    /// The exact value.
    fn value(self) -> f64;
    /// `saturate(q + zero_point)`. Integers round `q` half to even, add the zero point and clamp
    /// to their range (NaN gives the zero point). Float types round `q + zero_point` to nearest
    /// even; like any IEEE sum, `-0 + 0` is `+0`.
    fn quantize(q: f64, zero_point: Self, saturate: bool) -> Self;
}

macro_rules! quantized_int {
    ($($t:ty),*) => {$(
        impl Quantized for $t {
            #[inline]
            fn value(self) -> f64 {
                self as f64
            }
            #[inline]
            fn quantize(q: f64, zero_point: Self, _saturate: bool) -> Self {
                let r = q.round_ties_even() + zero_point.value();
                if r.is_nan() {
                    zero_point
                } else {
                    r.clamp(<$t>::MIN as f64, <$t>::MAX as f64) as $t
                }
            }
        }
    )*};
}

quantized_int!(i8, u8, i16, u16, i32);

macro_rules! quantized_sub_byte {
    ($($t:ty),*) => {$(
        impl Quantized for $t {
            #[inline]
            fn value(self) -> f64 {
                self.to_i64() as f64
            }
            #[inline]
            fn quantize(q: f64, zero_point: Self, _saturate: bool) -> Self {
                let r = q.round_ties_even() + zero_point.value();
                if r.is_nan() {
                    zero_point
                } else {
                    // Clamped in f64 first: `as i64` saturates, but only at the i64 range.
                    let (min, max) = (<$t>::MIN.to_i64() as f64, <$t>::MAX.to_i64() as f64);
                    <$t>::from_i64_saturating(r.clamp(min, max) as i64)
                }
            }
        }
    )*};
}

quantized_sub_byte!(I4, U4, I2, U2);

macro_rules! quantized_float {
    ($($t:ty),*) => {$(
        impl Quantized for $t {
            #[inline]
            fn value(self) -> f64 {
                self.to_f64()
            }
            #[inline]
            fn quantize(q: f64, zero_point: Self, saturate: bool) -> Self {
                <$t>::from_f64(q + zero_point.to_f64(), saturate)
            }
        }
    )*};
}

quantized_float!(F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F4E2M1);

/// A computation generic over the [`Quantized`] types.
trait QuantizedFn {
    type Out;
    fn call<Q: Quantized>(self) -> Self::Out;
}

/// Calls `f` with the Rust type of `dtype`; `with_int32` admits int32, which can be
/// dequantized but is not a quantization target.
fn with_quantized<F: QuantizedFn>(dtype: DataType, with_int32: bool, f: F) -> Option<F::Out> {
    use DataType as D;
    Some(match dtype {
        D::Int8 => f.call::<i8>(),
        D::Uint8 => f.call::<u8>(),
        D::Int16 => f.call::<i16>(),
        D::Uint16 => f.call::<u16>(),
        D::Int32 if with_int32 => f.call::<i32>(),
        D::Int4 => f.call::<I4>(),
        D::Uint4 => f.call::<U4>(),
        D::Int2 => f.call::<I2>(),
        D::Uint2 => f.call::<U2>(),
        D::Float8E4M3FN => f.call::<F8E4M3FN>(),
        D::Float8E4M3FNUZ => f.call::<F8E4M3FNUZ>(),
        D::Float8E5M2 => f.call::<F8E5M2>(),
        D::Float8E5M2FNUZ => f.call::<F8E5M2FNUZ>(),
        D::Float4E2M1 => f.call::<F4E2M1>(),
        _ => return None,
    })
}

/// A real element type: the input of QuantizeLinear, a scale, or DequantizeLinear's output.
trait RealElem: Element + Copy {
    fn to_f64(self) -> f64;
    /// Rounds to nearest even.
    fn from_f64(v: f64) -> Self;
}

impl RealElem for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl RealElem for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
}
impl RealElem for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
}
impl RealElem for i32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v.round_ties_even() as i32
    }
}

/// The values of a real tensor (float, float16, bfloat16, double, int32, float8e8m0) as f64.
fn real_values(t: &Tensor, index: usize) -> Result<Cow<'_, [f64]>, OpError> {
    fn map<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Cow<'static, [f64]> {
        Cow::Owned(v.iter().map(|&x| f(x)).collect())
    }
    Ok(match t.data() {
        TensorData::Double(v) => Cow::Borrowed(v),
        TensorData::Float(v) => map(v, f64::from),
        TensorData::Float16(v) => map(v, f16::to_f64),
        TensorData::Bfloat16(v) => map(v, bf16::to_f64),
        TensorData::Int32(v) => map(v, f64::from),
        TensorData::Float8E8M0(v) => map(v, F8E8M0::to_f64),
        _ => {
            return Err(OpError::input(
                index,
                format!("expected a float or int32 tensor, got {}", t.dtype()),
            ))
        }
    })
}

/// The values of a quantized tensor (any [`Quantized`] type, int32 included) as f64.
fn quantized_values(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    struct Values<'a>(&'a Tensor);
    impl QuantizedFn for Values<'_> {
        type Out = Vec<f64>;
        fn call<Q: Quantized>(self) -> Vec<f64> {
            let v = self.0.as_slice::<Q>().unwrap_or_default();
            v.iter().map(|x| x.value()).collect()
        }
    }
    with_quantized(t.dtype(), true, Values(t)).ok_or_else(|| {
        OpError::input(
            index,
            format!("expected a quantized type, got {}", t.dtype()),
        )
    })
}

/// The type a division or product is rounded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    F16,
    Bf16,
    F32,
    F64,
}

impl Precision {
    fn of(dtype: DataType) -> Option<Precision> {
        match dtype {
            DataType::Float16 => Some(Precision::F16),
            DataType::Bfloat16 => Some(Precision::Bf16),
            DataType::Float => Some(Precision::F32),
            DataType::Double => Some(Precision::F64),
            _ => None,
        }
    }

    /// The type `x / scale` is computed in without a `precision` attribute: the common type of
    /// the two, as in the reference (numpy) implementation. float16 and bfloat16 stay
    /// themselves when alike and meet at float; float8e8m0 (a power of two) joins the other
    /// side; int32 on either side needs double.
    fn common(x: DataType, scale: DataType) -> Precision {
        use DataType as D;
        match (x, scale) {
            (D::Int32, _) | (_, D::Int32) => Precision::F64,
            (D::Double, _) | (_, D::Double) => Precision::F64,
            (D::Float16, D::Float16) => Precision::F16,
            (D::Bfloat16, D::Bfloat16) => Precision::Bf16,
            _ => Precision::F32,
        }
    }

    #[inline]
    fn round(self, v: f64) -> f64 {
        match self {
            Precision::F16 => f16::from_f64(v).to_f64(),
            Precision::Bf16 => bf16::from_f64(v).to_f64(),
            Precision::F32 => v as f32 as f64,
            Precision::F64 => v,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantization granularity

/// How the scale and zero point map onto the elements of x: x is seen as rows of `row_len`
/// elements; row `r`'s element `i` uses parameter `base(r) + i·step(r)`.
#[derive(Debug)]
struct Layout {
    mode: Mode,
    row_len: usize,
    /// Per axis and blocked: the length of the quantized axis.
    len: usize,
}

#[derive(Debug, PartialEq)]
enum Mode {
    /// One scale for everything (rows are arbitrary chunks).
    PerTensor,
    /// One scale per index along the axis; a row is one index's run of inner elements.
    PerAxis,
    /// One scale per `block` consecutive indices along the axis (`blocks` per axis), for each
    /// outer and inner position.
    Blocked { block: usize, blocks: usize },
}

/// Rows of a per-tensor layout: large enough to amortise a task, small enough to split.
const PER_TENSOR_ROW: usize = 1 << 14;

impl Layout {
    /// The granularity a scale of shape `scale` gives x of shape `x` (QuantizeLinear's rules):
    /// a single value is per tensor; with `block_size` 0, a 1-D scale as long as x's `axis` is
    /// per axis; otherwise the scale has x's shape with axis `axis` cut into
    /// `ceil(D / block_size)` blocks.
    fn new(
        x: &[usize],
        scale: &[usize],
        axis: i64,
        block_size: i64,
        opset: i64,
    ) -> Result<Layout, OpError> {
        let count: usize = scale.iter().product();
        if count == 1 {
            let total: usize = x.iter().product();
            return Ok(Layout {
                mode: Mode::PerTensor,
                row_len: total.clamp(1, PER_TENSOR_ROW),
                len: 1,
            });
        }
        if opset < 13 {
            return Err(OpError::input(
                1,
                format!("opset {opset} takes a scalar scale, got shape {scale:?}"),
            ));
        }
        let axis = normalize_axis(axis, x.len())?;
        let len = x[axis];
        let row_len: usize = x[axis + 1..].iter().product();
        if block_size < 0 {
            return Err(OpError::attribute(
                "block_size",
                format!("must be >= 0, got {block_size}"),
            ));
        }
        if block_size == 0 {
            if scale.len() != 1 || scale[0] != len {
                return Err(OpError::input(
                    1,
                    format!(
                        "a per-axis scale must be 1-D with {len} values (x's axis {axis}), got shape {scale:?}"
                    ),
                ));
            }
            return Ok(Layout {
                mode: Mode::PerAxis,
                row_len,
                len,
            });
        }
        if opset < 21 {
            return Err(OpError::attribute(
                "block_size",
                format!("needs opset 21, the model has {opset}"),
            ));
        }
        let block = block_size as usize;
        let blocks = len.div_ceil(block);
        let matches =
            scale.len() == x.len()
                && scale.iter().zip(x).enumerate().all(|(d, (&s, &n))| {
                    if d == axis {
                        s == blocks
                    } else {
                        s == n
                    }
                });
        if !matches {
            return Err(OpError::input(
                1,
                format!(
                    "a blocked scale for x of shape {x:?} with block_size {block} on axis {axis} must have {blocks} values on that axis and x's dims elsewhere, got shape {scale:?}"
                ),
            ));
        }
        Ok(Layout {
            mode: Mode::Blocked { block, blocks },
            row_len,
            len,
        })
    }

    /// The parameter index of row `row`'s first element and the step between its elements.
    #[inline]
    fn row(&self, row: usize) -> (usize, usize) {
        match self.mode {
            Mode::PerTensor => (0, 0),
            Mode::PerAxis => (row % self.len, 0),
            Mode::Blocked { block, blocks } => {
                let (outer, a) = (row / self.len, row % self.len);
                ((outer * blocks + a / block) * self.row_len, 1)
            }
        }
    }

    /// Computes `out[i] = f(x[i], parameter index of i)`, in parallel when large.
    fn map<X: Sync, Y: Send>(&self, x: &[X], out: &mut [Y], f: impl Fn(&X, usize) -> Y + Sync) {
        if self.row_len == 0 {
            return;
        }
        let row = |(r, (y, x)): (usize, (&mut [Y], &[X]))| {
            let (base, step) = self.row(r);
            for (i, (y, x)) in y.iter_mut().zip(x).enumerate() {
                *y = f(x, base + i * step);
            }
        };
        if x.len() >= PARALLEL_MIN_LEN {
            out.par_chunks_mut(self.row_len)
                .zip(x.par_chunks(self.row_len))
                .with_min_len(PER_TENSOR_ROW.div_ceil(self.row_len))
                .enumerate()
                .for_each(row);
        } else {
            out.chunks_mut(self.row_len)
                .zip(x.chunks(self.row_len))
                .enumerate()
                .for_each(row);
        }
    }
}

/// The zero point must have the scale's shape (a scalar and a one-element vector both count as
/// one value).
fn check_zero_point(zp: &Tensor, scale: &Tensor, index: usize) -> Result<(), OpError> {
    if zp.shape() == scale.shape() || (zp.len() == 1 && scale.len() == 1) {
        Ok(())
    } else {
        Err(OpError::input(
            index,
            format!(
                "zero point shape {:?} differs from the scale's {:?}",
                zp.shape(),
                scale.shape()
            ),
        ))
    }
}

/// A `TensorProto.DataType` attribute (`output_dtype`, `precision`); 0 means unset.
fn dtype_attr(info: &NodeInfo, name: &str) -> Result<Option<DataType>, OpError> {
    match info.attr_int(name, 0)? {
        0 => Ok(None),
        code => i32::try_from(code)
            .ok()
            .and_then(DataType::from_onnx)
            .map(Some)
            .ok_or_else(|| OpError::attribute(name, format!("unknown data type {code}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear

/// ONNX `QuantizeLinear`, opsets 10 (per tensor), 13 (per axis), 19 (float8, `saturate`), 21
/// (blocked, int16/int4, `output_dtype`), 23 (float4e2m1, `precision`, int32/float scales...),
/// 24 (float8e8m0 scales), 25 (int2/uint2) and 28:
/// `y = saturate(round(x / y_scale) + y_zero_point)`.
///
/// The output type is the zero point's, else `output_dtype`, else uint8. `x / y_scale` is
/// computed in the `precision` type when given, else in the common type of x and the scale.
struct QuantizeLinear {
    opset: i64,
    axis: i64,
    saturate: bool,
    block_size: i64,
    output_dtype: Option<DataType>,
    precision: Option<Precision>,
}

fn build_quantize(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let precision = match dtype_attr(info, "precision")? {
        None => None,
        Some(d) => Some(Precision::of(d).ok_or_else(|| {
            OpError::attribute("precision", format!("must be a float type, got {d}"))
        })?),
    };
    Ok(Box::new(QuantizeLinear {
        opset: info.opset,
        axis: info.attr_int("axis", 1)?,
        saturate: info.attr_int("saturate", 1)? != 0,
        block_size: info.attr_int("block_size", 0)?,
        output_dtype: dtype_attr(info, "output_dtype")?,
        precision,
    }))
}

/// One quantization: the divisions' precision, scales (rounded to it) and the layout.
struct QuantizeJob<'a> {
    x: &'a Tensor,
    zero_point: Option<&'a Tensor>,
    scales: Vec<f64>,
    precision: Precision,
    layout: Layout,
    saturate: bool,
}

impl QuantizeJob<'_> {
    fn run<X: RealElem, Q: Quantized>(&self, x: &[X]) -> TensorData {
        let zero = [Q::default()];
        let zp = match self.zero_point {
            Some(t) => t.as_slice::<Q>().unwrap_or(&zero),
            None => &zero,
        };
        let (p, scales, saturate) = (self.precision, &self.scales, self.saturate);
        let mut out = vec![Q::default(); x.len()];
        self.layout.map(x, &mut out, |&x, i| {
            let q = p.round(p.round(x.to_f64()) / scales[i]);
            Q::quantize(q, zp[i % zp.len()], saturate)
        });
        Q::wrap(out)
    }
}

impl QuantizedFn for &QuantizeJob<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<Q: Quantized>(self) -> Self::Out {
        Ok(match self.x.data() {
            TensorData::Float(v) => self.run::<f32, Q>(v),
            TensorData::Float16(v) => self.run::<f16, Q>(v),
            TensorData::Bfloat16(v) => self.run::<bf16, Q>(v),
            TensorData::Int32(v) => self.run::<i32, Q>(v),
            _ => {
                return Err(OpError::input(
                    0,
                    format!(
                        "expected float, float16, bfloat16 or int32, got {}",
                        self.x.dtype()
                    ),
                ))
            }
        })
    }
}

impl Kernel for QuantizeLinear {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, scale) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let zero_point = inputs.opt_tensor(2)?;
        let out_type = match (zero_point, self.output_dtype) {
            (Some(zp), Some(d)) if zp.dtype() != d => {
                return Err(OpError::attribute(
                    "output_dtype",
                    format!("is {d} but the zero point is {}", zp.dtype()),
                ))
            }
            (Some(zp), _) => zp.dtype(),
            (None, Some(d)) => d,
            (None, None) => DataType::Uint8,
        };
        if let Some(zp) = zero_point {
            check_zero_point(zp, scale, 2)?;
        }
        let layout = Layout::new(
            x.shape(),
            scale.shape(),
            self.axis,
            self.block_size,
            self.opset,
        )?;
        let precision = self
            .precision
            .unwrap_or_else(|| Precision::common(x.dtype(), scale.dtype()));
        let scales = real_values(scale, 1)?
            .iter()
            .map(|&s| precision.round(s))
            .collect();
        let job = QuantizeJob {
            x,
            zero_point,
            scales,
            precision,
            layout,
            saturate: self.saturate,
        };
        let data = with_quantized(out_type, false, &job)
            .ok_or_else(|| OpError::unsupported(format!("cannot quantize to {out_type}")))??;
        Ok(vec![Tensor::new(x.shape(), data)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// DequantizeLinear

/// ONNX `DequantizeLinear`, opsets 10 (per tensor), 13 (per axis), 19 (float8), 21 (blocked,
/// int16/int4), 23 (float4e2m1, `output_dtype`), 24 (float8e8m0 scales), 25 (int2/uint2) and
/// 28: `y = (x - x_zero_point) · x_scale`, of type `output_dtype` or else the scale's type,
/// computed exactly and rounded once to it.
struct DequantizeLinear {
    opset: i64,
    axis: i64,
    block_size: i64,
    output_dtype: Option<DataType>,
}

fn build_dequantize(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(DequantizeLinear {
        opset: info.opset,
        axis: info.attr_int("axis", 1)?,
        block_size: info.attr_int("block_size", 0)?,
        output_dtype: dtype_attr(info, "output_dtype")?,
    }))
}

struct DequantizeJob<'a> {
    x: &'a Tensor,
    zero_point: Option<&'a Tensor>,
    scales: Cow<'a, [f64]>,
    layout: Layout,
    out_type: DataType,
}

impl DequantizeJob<'_> {
    fn run<Q: Quantized, Y: RealElem>(&self, x: &[Q]) -> TensorData {
        let zero = [Q::default()];
        let zp = match self.zero_point {
            Some(t) => t.as_slice::<Q>().unwrap_or(&zero),
            None => &zero,
        };
        let scales = &self.scales;
        let mut out = vec![Y::default(); x.len()];
        self.layout.map(x, &mut out, |&x, i| {
            Y::from_f64((x.value() - zp[i % zp.len()].value()) * scales[i])
        });
        Y::wrap(out)
    }
}

impl QuantizedFn for &DequantizeJob<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<Q: Quantized>(self) -> Self::Out {
        let x = self.x.as_slice::<Q>()?;
        Ok(match self.out_type {
            DataType::Float => self.run::<Q, f32>(x),
            DataType::Float16 => self.run::<Q, f16>(x),
            DataType::Bfloat16 => self.run::<Q, bf16>(x),
            other => {
                return Err(OpError::unsupported(format!(
                    "DequantizeLinear cannot produce {other}"
                )))
            }
        })
    }
}

impl Kernel for DequantizeLinear {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, scale) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let zero_point = inputs.opt_tensor(2)?;
        if let Some(zp) = zero_point {
            if zp.dtype() != x.dtype() {
                return Err(OpError::input(
                    2,
                    format!("expected {} like x, got {}", x.dtype(), zp.dtype()),
                ));
            }
            check_zero_point(zp, scale, 2)?;
        }
        let out_type = match self.output_dtype {
            Some(d) => d,
            None if scale.dtype() == DataType::Float8E8M0 => {
                return Err(OpError::attribute(
                    "output_dtype",
                    "is required with a float8e8m0 scale",
                ))
            }
            None => scale.dtype(),
        };
        let layout = Layout::new(
            x.shape(),
            scale.shape(),
            self.axis,
            self.block_size,
            self.opset,
        )?;
        let job = DequantizeJob {
            x,
            zero_point,
            scales: real_values(scale, 1)?,
            layout,
            out_type,
        };
        let data = with_quantized(x.dtype(), true, &job)
            .ok_or_else(|| OpError::input(0, format!("cannot dequantize {}", x.dtype())))??;
        Ok(vec![Tensor::new(x.shape(), data)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// DynamicQuantizeLinear

/// ONNX `DynamicQuantizeLinear`, opset 11: quantizes a float tensor to uint8 with the scale and
/// zero point that map `[min(x, 0), max(x, 0)]` onto `[0, 255]`; returns `y`, the scale and the
/// zero point. Computed in float like the spec's function body.
struct DynamicQuantizeLinear;

impl Kernel for DynamicQuantizeLinear {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x_t = inputs.tensor(0)?;
        let x = inputs.slice::<f32>(0)?;
        let (min, max) = x
            .iter()
            .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let scale = if max == min { 1.0 } else { max - min } / 255.0;
        let zero_point = (0.0 - min / scale).clamp(0.0, 255.0).round_ties_even();
        let quantize =
            |&v: &f32| ((v / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8;
        let y: Vec<u8> = if x.len() >= PARALLEL_MIN_LEN {
            x.par_iter().map(quantize).collect()
        } else {
            x.iter().map(quantize).collect()
        };
        Ok(vec![
            Tensor::from_vec(x_t.shape(), y)?.into(),
            Tensor::scalar(scale).into(),
            Tensor::scalar(zero_point as u8).into(),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// QLinearMatMul and QLinearConv

/// Requantizes an exact product sum `acc`: `saturate(round(acc · multiplier) + y_zero_point)`.
struct Requantize<'a> {
    acc: &'a [f64],
    /// Per element, `(multiplier index, zero point index)`.
    params: &'a (dyn Fn(usize) -> (usize, usize) + Sync),
    multipliers: &'a [f64],
    zero_point: &'a Tensor,
}

impl QuantizedFn for Requantize<'_> {
    type Out = TensorData;
    fn call<Q: Quantized>(self) -> TensorData {
        let zp = self.zero_point.as_slice::<Q>().unwrap_or_default();
        let one = |(i, &acc): (usize, &f64)| {
            let (m, z) = (self.params)(i);
            Q::quantize(acc * self.multipliers[m], zp[z], true)
        };
        Q::wrap(if self.acc.len() >= PARALLEL_MIN_LEN {
            self.acc.par_iter().enumerate().map(one).collect()
        } else {
            self.acc.iter().enumerate().map(one).collect()
        })
    }
}

/// The output type of a quantized product: its zero point's, int8/uint8 (or float8 from
/// opset 21).
fn product_output_type(zero_point: &Tensor, index: usize) -> Result<DataType, OpError> {
    use DataType as D;
    match zero_point.dtype() {
        d @ (D::Int8
        | D::Uint8
        | D::Float8E4M3FN
        | D::Float8E4M3FNUZ
        | D::Float8E5M2
        | D::Float8E5M2FNUZ) => Ok(d),
        other => Err(OpError::input(
            index,
            format!("expected int8, uint8 or float8, got {other}"),
        )),
    }
}

/// `x - zero_point` as f64, the zero point of element `i` being `zp[param(i)]`.
fn centred(
    x: &Tensor,
    zp: &Tensor,
    index: usize,
    param: impl Fn(usize) -> usize,
) -> Result<Vec<f64>, OpError> {
    if zp.dtype() != x.dtype() {
        return Err(OpError::input(
            index + 2,
            format!(
                "expected {} like input {index}, got {}",
                x.dtype(),
                zp.dtype()
            ),
        ));
    }
    let z = quantized_values(zp, index + 2)?;
    let mut v = quantized_values(x, index)?;
    v.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v -= z[param(i)]);
    Ok(v)
}

/// ONNX `QLinearMatMul`, opsets 10 and 21 (float16/bfloat16 scales, float8 types): NumPy
/// `matmul` of `a - a_zero_point` and `b - b_zero_point`, requantized with the multiplier
/// `a_scale · b_scale / y_scale` (computed in the scales' type) and `y_zero_point`.
///
/// a's scale and zero point are one value or one per row of a (`M`, or `batch·M` when a's
/// batch is the output's); b's one value or one per column (`N`, or `batch·N` likewise);
/// y's one value or one per output column.
struct QLinearMatMul;

/// Which parameter of a per-row (or per-column) list a row `r` of a batch of `rows`-row
/// matrices uses: `count` is 1, `per_matrix` or `rows`.
fn cyclic_param(
    count: usize,
    per_matrix: usize,
    rows: usize,
    what: &str,
    index: usize,
) -> Result<usize, OpError> {
    if count == 1 || count == per_matrix || count == rows {
        Ok(count)
    } else {
        Err(OpError::input(
            index,
            format!("{count} {what} values: expected 1, {per_matrix} or {rows}"),
        ))
    }
}

impl Kernel for QLinearMatMul {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (a, a_scale, a_zp) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let (b, b_scale, b_zp) = (inputs.tensor(3)?, inputs.tensor(4)?, inputs.tensor(5)?);
        let (y_scale, y_zp) = (inputs.tensor(6)?, inputs.tensor(7)?);
        let out_type = product_output_type(y_zp, 7)?;
        let plan = MatMulPlan::new(a.shape(), b.shape())?;
        let (m, k, n) = plan.dims();
        let out_len: usize = plan.out_shape().iter().product();
        let (a_rows, b_mats) = (a.len() / k.max(1), b.len() / (k * n).max(1));
        let (out_rows, out_mats) = (out_len / n.max(1), out_len / (m * n).max(1));

        // Zero points index a's own rows and b's own columns.
        let az = cyclic_param(a_zp.len(), m, a_rows, "a_zero_point", 2)?;
        let bz = cyclic_param(b_zp.len(), n, b_mats * n, "b_zero_point", 5)?;
        let a_c = centred(a, a_zp, 0, |i| (i / k.max(1)) % az)?;
        let b_c = centred(b, b_zp, 3, |i| {
            ((i / (k * n).max(1)) * n + i % n.max(1)) % bz
        })?;
        let acc = plan.run(&a_c, &b_c)?;

        // Scales index output rows and columns; batch-long lists need unbroadcast batches.
        let sa = cyclic_param(a_scale.len(), m, out_rows, "a_scale", 1)?;
        let sb = cyclic_param(b_scale.len(), n, out_mats * n, "b_scale", 4)?;
        let sy = cyclic_param(y_scale.len(), n, out_mats * n, "y_scale", 6)?;
        let zy = cyclic_param(y_zp.len(), n, out_mats * n, "y_zero_point", 7)?;
        if (sa > m && a_rows != out_rows) || (sb.max(sy).max(zy) > n && b_mats != out_mats) {
            return Err(OpError::unsupported(
                "QLinearMatMul: per-batch scales with broadcast batch dims",
            ));
        }
        let precision = Precision::of(a_scale.dtype()).ok_or_else(|| {
            OpError::input(
                1,
                format!("expected a float scale, got {}", a_scale.dtype()),
            )
        })?;
        let (a_s, b_s, y_s) = (
            real_values(a_scale, 1)?,
            real_values(b_scale, 4)?,
            real_values(y_scale, 6)?,
        );
        // One multiplier per (a-scale row, column) pair, precomputed.
        let cols = sb.max(sy);
        let multipliers: Vec<f64> = (0..sa * cols)
            .map(|p| {
                let (r, c) = (p / cols, p % cols);
                let ab = precision.round(a_s[r] * b_s[c % sb]);
                precision.round(ab / y_s[c % sy])
            })
            .collect();
        let params = |i: usize| {
            let (row, col) = (i / n.max(1), i % n.max(1));
            let col_all = (row / m.max(1)) * n + col;
            ((row % sa) * cols + col_all % cols, col_all % zy)
        };
        let data = with_quantized(
            out_type,
            false,
            Requantize {
                acc: &acc,
                params: &params,
                multipliers: &multipliers,
                zero_point: y_zp,
            },
        )
        .ok_or_else(|| OpError::unsupported(format!("cannot quantize to {out_type}")))?;
        Ok(vec![Tensor::new(plan.out_shape(), data)?.into()])
    }
}

/// ONNX `QLinearConv`, opset 10: Conv of `x - x_zero_point` (a scalar) and `w - w_zero_point`
/// (a scalar or one per output channel), plus the int32 bias, requantized with the multiplier
/// `x_scale · w_scale / y_scale` (float; w_scale may be per output channel) and the scalar
/// `y_zero_point`.
struct QLinearConv(IntegerConv);

impl Kernel for QLinearConv {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, x_scale, x_zp) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        let (w, w_scale, w_zp) = (inputs.tensor(3)?, inputs.tensor(4)?, inputs.tensor(5)?);
        let (y_scale, y_zp) = (inputs.tensor(6)?, inputs.tensor(7)?);
        let out_type = match y_zp.dtype() {
            d @ (DataType::Int8 | DataType::Uint8) => d,
            other => {
                return Err(OpError::input(
                    7,
                    format!("expected int8 or uint8, got {other}"),
                ))
            }
        };
        for (t, index) in [(x, 0), (w, 3)] {
            if !matches!(t.dtype(), DataType::Int8 | DataType::Uint8) {
                return Err(OpError::input(
                    index,
                    format!("expected int8 or uint8, got {}", t.dtype()),
                ));
            }
        }
        for (t, index) in [(x_scale, 1), (x_zp, 2), (y_scale, 6), (y_zp, 7)] {
            if t.len() != 1 {
                return Err(OpError::input(
                    index,
                    format!("expected a scalar, got shape {:?}", t.shape()),
                ));
            }
        }
        let channels = self.0.out_channels(x.shape(), w.shape())?;
        for (t, index) in [(w_scale, 4), (w_zp, 5)] {
            if t.len() != 1 && t.len() != channels {
                return Err(OpError::input(
                    index,
                    format!("{} values for {channels} output channels", t.len()),
                ));
            }
        }
        let x_c = centred(x, x_zp, 0, |_| 0)?;
        let per_filter = w.len() / channels.max(1);
        let wz = w_zp.len();
        let w_c = centred(w, w_zp, 3, |i| (i / per_filter.max(1)) % wz)?;
        let bias = match inputs.opt_tensor(8)? {
            Some(b) => Some(
                b.as_slice::<i32>()
                    .map_err(|_| OpError::input(8, format!("expected int32, got {}", b.dtype())))?
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect::<Vec<_>>(),
            ),
            None => None,
        };
        let (shape, acc) = self
            .0
            .forward(&x_c, x.shape(), &w_c, w.shape(), bias.as_deref())?;

        let (x_s, w_s, y_s) = (
            real_values(x_scale, 1)?,
            real_values(w_scale, 4)?,
            real_values(y_scale, 6)?,
        );
        let p = Precision::F32;
        let multipliers: Vec<f64> = w_s
            .iter()
            .map(|&ws| p.round(p.round(x_s[0] * ws) / y_s[0]))
            .collect();
        let plane: usize = shape[2..].iter().product();
        let ws = w_s.len();
        let params = |i: usize| ((i / plane.max(1)) % channels.max(1) % ws, 0);
        let data = with_quantized(
            out_type,
            false,
            Requantize {
                acc: &acc,
                params: &params,
                multipliers: &multipliers,
                zero_point: y_zp,
            },
        )
        .ok_or_else(|| OpError::unsupported(format!("cannot quantize to {out_type}")))?;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kernel: &dyn Kernel, inputs: Vec<Option<Tensor>>) -> Vec<Tensor> {
        let inputs = Inputs::new(inputs.into_iter().map(|t| t.map(Value::from)).collect());
        kernel
            .run(inputs)
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect()
    }

    fn quantize_linear(axis: i64, block_size: i64) -> QuantizeLinear {
        QuantizeLinear {
            opset: 25,
            axis,
            saturate: true,
            block_size,
            output_dtype: None,
            precision: None,
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let x = Tensor::from_vec([6], vec![0.5f32, 1.5, 2.5, -1.5, 1000.0, -1000.0]).unwrap();
        let y = run(
            &quantize_linear(1, 0),
            vec![
                Some(x),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(1i8)),
            ],
        );
        assert_eq!(y[0].as_slice::<i8>().unwrap(), &[1, 3, 3, -1, 127, -128]);
    }

    #[test]
    fn quantize_blocked_uses_one_scale_per_block() {
        // x [2, 3], blocks of 2 along axis 1: scales [2, 2].
        let x = Tensor::from_vec([2, 3], vec![2f32, 4., 6., 8., 10., 12.]).unwrap();
        let s = Tensor::from_vec([2, 2], vec![1f32, 2., 2., 4.]).unwrap();
        let y = run(&quantize_linear(1, 2), vec![Some(x), Some(s), None]);
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[2, 4, 3, 4, 5, 3]);
    }

    #[test]
    fn quantize_rejects_a_mismatched_blocked_scale() {
        let x = Tensor::from_vec([2, 3], vec![0f32; 6]).unwrap();
        let s = Tensor::from_vec([2, 3], vec![1f32; 6]).unwrap();
        let inputs = Inputs::new(vec![Some(x.into()), Some(s.into())]);
        assert!(quantize_linear(1, 2).run(inputs).is_err());
    }

    #[test]
    fn dequantize_per_axis() {
        let x = Tensor::from_vec([2, 2], vec![I4(-8), I4(7), I4(0), I4(1)]).unwrap();
        let s = Tensor::from_vec([2], vec![0.5f32, 2.0]).unwrap();
        let zp = Tensor::from_vec([2], vec![I4(0), I4(1)]).unwrap();
        let k = DequantizeLinear {
            opset: 25,
            axis: 0,
            block_size: 0,
            output_dtype: None,
        };
        let y = run(&k, vec![Some(x), Some(s), Some(zp)]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-4.0, 3.5, -2.0, 0.0]);
    }

    #[test]
    fn qlinear_matmul_per_row_and_column() {
        let a = Tensor::from_vec([2, 2], vec![1u8, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec([2, 2], vec![1u8, 0, 0, 1]).unwrap();
        let a_s = Tensor::from_vec([2], vec![1f32, 2.0]).unwrap();
        let a_z = Tensor::from_vec([2], vec![0u8, 1]).unwrap();
        let y = run(
            &QLinearMatMul,
            vec![
                Some(a),
                Some(a_s),
                Some(a_z),
                Some(b),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(0u8)),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(10u8)),
            ],
        );
        // (a - zp) = [[1, 2], [2, 3]], times the identity, row 1 scaled by 2, plus 10.
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[11, 12, 14, 16]);
    }
}
