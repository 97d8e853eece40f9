//! Unary elementwise ops: float math (Sqrt, Exp, Log, trigonometry, Erf, Round...), activations
//! (Relu, Sigmoid, Gelu, Elu...), Abs, Neg, Sign, Clip, Shrink, IsNaN and IsInf.
//!
//! Each kernel takes its input by value and computes in place when it holds the only reference
//! to the buffer. A float op is a [`FloatOp`] whose [`FloatOp::apply`] maps a slice of f32 or f64
//! (the place where a vectorised version of an op drops in); float16 and bfloat16 go through f32
//! in small stack blocks, and large tensors are split across the rayon pool.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use runnx_ir::scalar::{F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ};
use runnx_ir::{Element, Shape, Tensor, TensorData, Value};

use super::elementwise::{unsupported, with_numeric_type, Numeric, NumericFn};
use crate::kernels::broadcast::{par_chunks_apply, par_rows_apply};
use crate::kernels::vecmath;
use crate::registry::BuildFn;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    use FloatOp as F;
    let no_attributes: [(&'static str, &[i64], BuildFn); 25] = [
        ("Sqrt", &[1, 6, 13], |_| float(F::Sqrt)),
        ("Exp", &[1, 6, 13], |_| float(F::Exp)),
        ("Log", &[1, 6, 13], |_| float(F::Log)),
        ("Reciprocal", &[1, 6, 13], |_| float(F::Reciprocal)),
        ("Floor", &[1, 6, 13], |_| float(F::Floor)),
        ("Ceil", &[1, 6, 13], |_| float(F::Ceil)),
        ("Round", &[11, 22], |_| float(F::Round)),
        ("Sin", &[7, 22], |_| float(F::Sin)),
        ("Cos", &[7, 22], |_| float(F::Cos)),
        ("Tan", &[7, 22], |_| float(F::Tan)),
        ("Asin", &[7, 22], |_| float(F::Asin)),
        ("Acos", &[7, 22], |_| float(F::Acos)),
        ("Atan", &[7, 22], |_| float(F::Atan)),
        ("Sinh", &[9, 22], |_| float(F::Sinh)),
        ("Cosh", &[9, 22], |_| float(F::Cosh)),
        ("Asinh", &[9, 22], |_| float(F::Asinh)),
        ("Acosh", &[9, 22], |_| float(F::Acosh)),
        ("Atanh", &[9, 22], |_| float(F::Atanh)),
        ("Erf", &[9, 13], |_| float(F::Erf)),
        ("Sigmoid", &[1, 6, 13], |_| float(F::Sigmoid)),
        ("Tanh", &[1, 6, 13], |_| float(F::Tanh)),
        ("Softplus", &[1, 22], |_| float(F::Softplus)),
        ("Softsign", &[1, 22], |_| float(F::Softsign)),
        ("Mish", &[18, 22], |_| float(F::Mish)),
        ("HardSwish", &[14, 22], |_| float(F::HardSwish)),
    ];
    for (name, versions, build) in no_attributes {
        reg.add_versions("", name, versions, build);
    }
    reg.add("", "Gelu", 20, build_gelu);
    // onnxruntime's contrib op (erf form, no attributes): what runnx's optimizer fuses GELU into.
    reg.add("com.microsoft", "Gelu", 1, build_gelu);
    reg.add("com.microsoft", "BiasGelu", 1, |_| Ok(Box::new(BiasGelu)));
    reg.add_versions("", "LeakyRelu", &[1, 6, 16], |i| {
        float(F::LeakyRelu {
            alpha: i.attr_float("alpha", 0.01)?,
        })
    });
    reg.add_versions("", "HardSigmoid", &[1, 6, 22], |i| {
        float(F::HardSigmoid {
            alpha: i.attr_float("alpha", 0.2)?,
            beta: i.attr_float("beta", 0.5)?,
        })
    });
    reg.add_versions("", "Elu", &[1, 6, 22], |i| {
        float(F::Elu {
            alpha: i.attr_float("alpha", 1.0)?,
        })
    });
    reg.add_versions("", "Selu", &[1, 6, 22], |i| {
        float(F::Selu {
            alpha: i.attr_float("alpha", 1.673_263_2)?,
            gamma: i.attr_float("gamma", 1.050_701)?,
        })
    });
    reg.add_versions("", "Celu", &[12, 28], build_celu);
    reg.add_versions("", "ThresholdedRelu", &[10, 22], |i| {
        float(F::ThresholdedRelu {
            alpha: i.attr_float("alpha", 1.0)?,
        })
    });
    reg.add_versions("", "Abs", &[1, 6, 13], |_| numeric(NumericOp::Abs));
    reg.add_versions("", "Neg", &[1, 6, 13], |_| numeric(NumericOp::Neg));
    reg.add_versions("", "Sign", &[9, 13], |_| numeric(NumericOp::Sign));
    reg.add_versions("", "Relu", &[1, 6, 13, 14], |_| numeric(NumericOp::Relu));
    reg.add_versions("", "Clip", &[1, 6, 11, 12, 13], build_clip);
    reg.add("", "Shrink", 9, build_shrink);
    reg.add_versions("", "IsNaN", &[9, 13, 20], |_| Ok(Box::new(IsNaNKernel)));
    reg.add_versions("", "IsInf", &[10, 20], build_isinf);
}

// ---------------------------------------------------------------------------------------------
// Float ops

/// A real type the float formulas compute in: f32 and f64 (float16 and bfloat16 use f32).
pub(crate) trait Real: num_traits::Float + Send + Sync {
    /// An attribute value in this type.
    fn of(v: f32) -> Self;
    fn erf(self) -> Self;
    /// Rounds half-way cases to the nearest even integer.
    fn round_even(self) -> Self;
    /// `e^x` of every element (f32 overrides these three with vectorised versions).
    fn exp_all(xs: &mut [Self]) {
        map(xs, |x| x.exp());
    }
    fn erf_all(xs: &mut [Self]) {
        map(xs, |x| x.erf());
    }
    /// GELU without approximation: `x/2 · (1 + erf(x/√2))`.
    fn gelu_all(xs: &mut [Self]) {
        let (half, rsqrt2) = (Self::of(0.5), Self::of(std::f32::consts::FRAC_1_SQRT_2));
        map(xs, |x| half * x * (Self::one() + (x * rsqrt2).erf()));
    }
}

impl Real for f32 {
    fn of(v: f32) -> f32 {
        v
    }
    /// musl's `erff` (through the `libm` crate): a rational approximation on each of a few
    /// intervals, with an error below 1 ulp.
    fn erf(self) -> f32 {
        libm::erff(self)
    }
    fn round_even(self) -> f32 {
        self.round_ties_even()
    }
    fn exp_all(xs: &mut [f32]) {
        vecmath::exp_in_place(xs);
    }
    fn erf_all(xs: &mut [f32]) {
        vecmath::erf_in_place(xs);
    }
    fn gelu_all(xs: &mut [f32]) {
        vecmath::gelu_in_place(xs);
    }
}

impl Real for f64 {
    fn of(v: f32) -> f64 {
        v as f64
    }
    /// musl's `erf` (through the `libm` crate), error below 1 ulp.
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    fn round_even(self) -> f64 {
        self.round_ties_even()
    }
}

/// An elementwise float function and its attributes.
#[derive(Clone, Copy, Debug)]
enum FloatOp {
    Sqrt,
    Exp,
    Log,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Erf,
    Sigmoid,
    Tanh,
    Softplus,
    Softsign,
    Mish,
    HardSwish,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    LeakyRelu {
        alpha: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
}

/// `x[i] = f(x[i])`; inlined into each op's arm so every op gets its own loop.
#[inline(always)]
fn map<T: Copy>(xs: &mut [T], f: impl Fn(T) -> T) {
    for x in xs {
        *x = f(*x);
    }
}

/// `ln(1 + e^x)`, without overflow for large `x`.
#[inline(always)]
fn softplus<T: Real>(x: T) -> T {
    if x > T::zero() {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl FloatOp {
    /// Applies the op to every element of `xs`. The op is matched once per slice; each arm is
    /// its own loop, which is where a SIMD version of an op replaces the scalar one.
    fn apply<T: Real>(self, xs: &mut [T]) {
        let zero = T::zero();
        let one = T::one();
        match self {
            FloatOp::Sqrt => map(xs, |x| x.sqrt()),
            FloatOp::Exp => T::exp_all(xs),
            FloatOp::Log => map(xs, |x| x.ln()),
            FloatOp::Reciprocal => map(xs, |x| x.recip()),
            FloatOp::Floor => map(xs, |x| x.floor()),
            FloatOp::Ceil => map(xs, |x| x.ceil()),
            FloatOp::Round => map(xs, |x| x.round_even()),
            FloatOp::Sin => map(xs, |x| x.sin()),
            FloatOp::Cos => map(xs, |x| x.cos()),
            FloatOp::Tan => map(xs, |x| x.tan()),
            FloatOp::Asin => map(xs, |x| x.asin()),
            FloatOp::Acos => map(xs, |x| x.acos()),
            FloatOp::Atan => map(xs, |x| x.atan()),
            FloatOp::Sinh => map(xs, |x| x.sinh()),
            FloatOp::Cosh => map(xs, |x| x.cosh()),
            FloatOp::Asinh => map(xs, |x| x.asinh()),
            FloatOp::Acosh => map(xs, |x| x.acosh()),
            FloatOp::Atanh => map(xs, |x| x.atanh()),
            FloatOp::Erf => T::erf_all(xs),
            FloatOp::Sigmoid => {
                // 1 / (1 + e^-x): e^-x overflows to infinity for very negative x, giving 0.
                map(xs, |x| -x);
                T::exp_all(xs);
                map(xs, |e| one / (one + e));
            }
            FloatOp::Tanh => map(xs, |x| x.tanh()),
            FloatOp::Softplus => map(xs, softplus),
            FloatOp::Softsign => map(xs, |x| x / (one + x.abs())),
            FloatOp::Mish => map(xs, |x| x * softplus(x).tanh()),
            FloatOp::HardSwish => {
                let (alpha, beta) = (T::of(1.0 / 6.0), T::of(0.5));
                map(xs, |x| x * (alpha * x + beta).max(zero).min(one))
            }
            FloatOp::Gelu => T::gelu_all(xs),
            FloatOp::GeluTanh => {
                let half = T::of(0.5);
                let (k, c) = (T::of((2.0 / std::f32::consts::PI).sqrt()), T::of(0.044715));
                map(xs, |x| half * x * (one + (k * (x + c * x * x * x)).tanh()))
            }
            FloatOp::LeakyRelu { alpha } => {
                let alpha = T::of(alpha);
                map(xs, |x| if x < zero { alpha * x } else { x })
            }
            FloatOp::HardSigmoid { alpha, beta } => {
                let (alpha, beta) = (T::of(alpha), T::of(beta));
                map(xs, |x| (alpha * x + beta).max(zero).min(one))
            }
            FloatOp::Elu { alpha } => {
                let alpha = T::of(alpha);
                map(xs, |x| if x < zero { alpha * x.exp_m1() } else { x })
            }
            FloatOp::Selu { alpha, gamma } => {
                let (alpha, gamma) = (T::of(alpha), T::of(gamma));
                map(xs, |x| {
                    if x > zero {
                        gamma * x
                    } else {
                        gamma * (alpha * x.exp() - alpha)
                    }
                })
            }
            FloatOp::Celu { alpha } => {
                let alpha = T::of(alpha);
                map(xs, |x| {
                    x.max(zero) + (alpha * (x / alpha).exp_m1()).min(zero)
                })
            }
            FloatOp::ThresholdedRelu { alpha } => {
                let alpha = T::of(alpha);
                map(xs, |x| if x > alpha { x } else { zero })
            }
        }
    }
}

/// Float16 and bfloat16: `f` on f32 copies of stack-sized blocks, rounded back in place.
fn through_f32<H>(xs: &mut [H], f: impl Fn(&mut [f32]))
where
    [H]: HalfFloatSliceExt,
{
    const BLOCK: usize = 512;
    let mut buf = [0f32; BLOCK];
    for block in xs.chunks_mut(BLOCK) {
        let tmp = &mut buf[..block.len()];
        block.convert_to_f32_slice(tmp);
        f(tmp);
        block.convert_from_f32_slice(tmp);
    }
}

/// The unary float ops (see [`register`] for names and opset versions): float, double,
/// float16 and bfloat16. Integer inputs (Erf before opset 13 allows them) are computed in f64
/// and converted back as a C cast would.
struct FloatKernel {
    op: FloatOp,
}

fn float(op: FloatOp) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(FloatKernel { op }))
}

/// ONNX Gelu (opset 20), `approximate` = `none` or `tanh`.
fn build_gelu(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    match info.attr_string("approximate", "none")?.as_str() {
        "none" => float(FloatOp::Gelu),
        "tanh" => float(FloatOp::GeluTanh),
        other => Err(OpError::attribute(
            "approximate",
            format!("must be 'none' or 'tanh', got '{other}'"),
        )),
    }
}

/// ONNX Celu (opsets 12, 28); `alpha` must not be zero.
fn build_celu(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let alpha = info.attr_float("alpha", 1.0)?;
    if alpha == 0.0 {
        return Err(OpError::attribute("alpha", "must not be zero"));
    }
    float(FloatOp::Celu { alpha })
}

impl Kernel for FloatKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let shape: Shape = x.shape().into();
        let op = self.op;
        let data = match x.into_data() {
            TensorData::Float(mut v) => {
                par_chunks_apply(&mut v, |c| op.apply(c));
                TensorData::Float(v)
            }
            TensorData::Double(mut v) => {
                par_chunks_apply(&mut v, |c| op.apply(c));
                TensorData::Double(v)
            }
            TensorData::Float16(mut v) => {
                par_chunks_apply(&mut v, |c| through_f32(c, |f| op.apply(f)));
                TensorData::Float16(v)
            }
            TensorData::Bfloat16(mut v) => {
                par_chunks_apply(&mut v, |c| through_f32(c, |f| op.apply(f)));
                TensorData::Bfloat16(v)
            }
            other if other.dtype().is_integer() => {
                with_numeric_type(other.dtype(), IntegerThroughF64 { op, data: other })??
            }
            other => return Err(unsupported(other.dtype())),
        };
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

/// onnxruntime's `com.microsoft.BiasGelu`: `Gelu(A + B)` (erf form) with B a vector along A's
/// last axis, the bias of the linear layer before it added in the activation's pass.
struct BiasGelu;

impl Kernel for BiasGelu {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let shape: Shape = x.shape().into();
        let hidden = shape.last().copied().unwrap_or(1);
        let bias = inputs.tensor(1)?;
        if bias.shape() != [hidden] || bias.dtype() != x.dtype() {
            return Err(OpError::input(
                1,
                format!(
                    "bias must be a {} vector of A's last dim ({hidden}), got {} {:?}",
                    x.dtype(),
                    bias.dtype(),
                    bias.shape()
                ),
            ));
        }
        let data = match (x.into_data(), bias.data()) {
            (TensorData::Float(mut v), TensorData::Float(b)) => {
                par_rows_apply(&mut v, hidden, |rows| add_bias_gelu(rows, b));
                TensorData::Float(v)
            }
            (TensorData::Double(mut v), TensorData::Double(b)) => {
                par_rows_apply(&mut v, hidden, |rows| add_bias_gelu(rows, b));
                TensorData::Double(v)
            }
            (TensorData::Float16(v), TensorData::Float16(b)) => {
                let (mut wide, b) = (v.to_f32_vec(), b.to_f32_vec());
                par_rows_apply(&mut wide, hidden, |rows| add_bias_gelu(rows, &b));
                TensorData::Float16(wide.iter().map(|&x| f16::from_f32(x)).collect())
            }
            (TensorData::Bfloat16(v), TensorData::Bfloat16(b)) => {
                let (mut wide, b) = (v.to_f32_vec(), b.to_f32_vec());
                par_rows_apply(&mut wide, hidden, |rows| add_bias_gelu(rows, &b));
                TensorData::Bfloat16(wide.iter().map(|&x| bf16::from_f32(x)).collect())
            }
            (other, _) => return Err(unsupported(other.dtype())),
        };
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

/// `rows` (whole rows of `bias.len()`) plus `bias` on each row, then Gelu.
fn add_bias_gelu<T: Real>(rows: &mut [T], bias: &[T]) {
    for row in rows.chunks_mut(bias.len().max(1)) {
        row.iter_mut().zip(bias).for_each(|(x, &b)| *x = *x + b);
    }
    FloatOp::Gelu.apply(rows);
}

struct IntegerThroughF64 {
    op: FloatOp,
    data: TensorData,
}

impl NumericFn for IntegerThroughF64 {
    type Out = Result<TensorData, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let data = T::into_vec(self.data).map_err(|d| unsupported(d.dtype()))?;
        let mut wide: Vec<f64> = data.iter().map(|v| v.to_f64()).collect();
        self.op.apply(&mut wide);
        Ok(T::wrap(wide.into_iter().map(T::from_f64).collect()))
    }
}

// ---------------------------------------------------------------------------------------------
// Numeric ops: Abs, Neg, Sign, Relu

#[derive(Clone, Copy, Debug)]
enum NumericOp {
    Abs,
    Neg,
    Sign,
    Relu,
}

/// ONNX Abs and Neg (opsets 1, 6, 13), Sign (9, 13) and Relu (1, 6, 13, 14) on every numeric
/// type. Integer Abs and Neg wrap for the most negative value, as in C++.
struct NumericKernel {
    op: NumericOp,
}

fn numeric(op: NumericOp) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(NumericKernel { op }))
}

impl Kernel for NumericKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let out = with_numeric_type(x.dtype(), NumericRun { op: self.op, x })??;
        Ok(vec![out.into()])
    }
}

struct NumericRun {
    op: NumericOp,
    x: Tensor,
}

impl NumericFn for NumericRun {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let shape: Shape = self.x.shape().into();
        let mut data = self.x.into_vec::<T>()?;
        let op = self.op;
        par_chunks_apply(&mut data, |c| match op {
            NumericOp::Abs => map(c, T::abs),
            NumericOp::Neg => map(c, T::neg),
            NumericOp::Sign => map(c, T::sign),
            NumericOp::Relu => map(c, |x| if x < T::zero() { T::zero() } else { x }),
        });
        Ok(Tensor::from_vec(shape, data)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Clip

/// ONNX Clip (opsets 1, 6, 11, 12, 13): `min(max(x, lo), hi)`, so `hi` wins when `lo > hi`;
/// NaN stays NaN. Before opset 11 the bounds are the `min`/`max` float attributes (default: no
/// bound); from 11 they are optional scalar inputs of X's type. Integer types from opset 12.
struct ClipKernel {
    /// The attribute bounds (opset < 11).
    attrs: Option<(Option<f32>, Option<f32>)>,
}

fn build_clip(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let attrs = if info.opset < 11 {
        Some((info.attr_float_opt("min")?, info.attr_float_opt("max")?))
    } else {
        None
    };
    Ok(Box::new(ClipKernel { attrs }))
}

impl Kernel for ClipKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let bound = |inputs: &Inputs, i: usize| -> Result<Option<Tensor>, OpError> {
            match inputs.opt_tensor(i)? {
                Some(t) if t.len() != 1 => Err(OpError::input(
                    i,
                    format!("must be a scalar, got shape {:?}", t.shape()),
                )),
                other => Ok(other.cloned()),
            }
        };
        let (lo, hi) = match self.attrs {
            Some((lo, hi)) => (
                lo.map(|v| Bound::Attr(v as f64)),
                hi.map(|v| Bound::Attr(v as f64)),
            ),
            None => (
                bound(&inputs, 1)?.map(Bound::Input),
                bound(&inputs, 2)?.map(Bound::Input),
            ),
        };
        let x = inputs.take_tensor(0)?;
        let out = with_numeric_type(x.dtype(), ClipRun { x, lo, hi })??;
        Ok(vec![out.into()])
    }
}

enum Bound {
    Attr(f64),
    Input(Tensor),
}

impl Bound {
    fn value<T: Numeric>(&self, index: usize) -> Result<T, OpError> {
        match self {
            Bound::Attr(v) => Ok(T::from_f64(*v)),
            Bound::Input(t) => t
                .as_slice::<T>()
                .ok()
                .and_then(|s| s.first().copied())
                .ok_or_else(|| {
                    OpError::input(index, format!("expected {}, got {}", T::DTYPE, t.dtype()))
                }),
        }
    }
}

struct ClipRun {
    x: Tensor,
    lo: Option<Bound>,
    hi: Option<Bound>,
}

impl NumericFn for ClipRun {
    type Out = Result<Tensor, OpError>;
    fn call<T: Numeric>(self) -> Self::Out {
        let lo: Option<T> = self.lo.as_ref().map(|b| b.value(1)).transpose()?;
        let hi: Option<T> = self.hi.as_ref().map(|b| b.value(2)).transpose()?;
        let shape: Shape = self.x.shape().into();
        let mut data = self.x.into_vec::<T>()?;
        par_chunks_apply(&mut data, |c| match (lo, hi) {
            (Some(lo), Some(hi)) => map(c, |x| {
                let x = if x < lo { lo } else { x };
                if x > hi {
                    hi
                } else {
                    x
                }
            }),
            (Some(lo), None) => map(c, |x| if x < lo { lo } else { x }),
            (None, Some(hi)) => map(c, |x| if x > hi { hi } else { x }),
            (None, None) => {}
        });
        Ok(Tensor::from_vec(shape, data)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Shrink

/// ONNX Shrink (opset 9): `x < -lambd ? x + bias : x > lambd ? x - bias : 0`, on every numeric
/// type (computed in f64, converted back as a C cast would).
struct ShrinkKernel {
    lambd: f64,
    bias: f64,
}

fn build_shrink(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ShrinkKernel {
        lambd: info.attr_float("lambd", 0.5)? as f64,
        bias: info.attr_float("bias", 0.0)? as f64,
    }))
}

impl Kernel for ShrinkKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        struct Run<'a>(&'a ShrinkKernel, Tensor);
        impl NumericFn for Run<'_> {
            type Out = Result<Tensor, OpError>;
            fn call<T: Numeric>(self) -> Self::Out {
                let (lambd, bias) = (self.0.lambd, self.0.bias);
                let shape: Shape = self.1.shape().into();
                let mut data = self.1.into_vec::<T>()?;
                par_chunks_apply(&mut data, |c| {
                    map(c, |x| {
                        let v = x.to_f64();
                        if v < -lambd {
                            T::from_f64(v + bias)
                        } else if v > lambd {
                            T::from_f64(v - bias)
                        } else {
                            T::zero()
                        }
                    })
                });
                Ok(Tensor::from_vec(shape, data)?)
            }
        }
        let x = inputs.take_tensor(0)?;
        Ok(vec![with_numeric_type(x.dtype(), Run(self, x))??.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// IsNaN, IsInf

/// The float types IsNaN and IsInf accept, read as f64 (exactly).
trait FloatValue: Element + Copy {
    fn value(self) -> f64;
}

macro_rules! float_value {
    ($($t:ty => |$x:ident| $e:expr),* $(,)?) => {$(
        impl FloatValue for $t {
            fn value(self) -> f64 {
                let $x = self;
                $e
            }
        }
    )*};
}
float_value! {
    f32 => |x| x as f64,
    f64 => |x| x,
    f16 => |x| x.to_f64(),
    bf16 => |x| x.to_f64(),
    F8E4M3FN => |x| x.to_f64(),
    F8E4M3FNUZ => |x| x.to_f64(),
    F8E5M2 => |x| x.to_f64(),
    F8E5M2FNUZ => |x| x.to_f64(),
}

/// `f` over the elements of a float tensor, as a bool tensor of the same shape.
fn classify(x: &Tensor, f: impl Fn(f64) -> bool) -> Result<Tensor, OpError> {
    fn run<T: FloatValue>(v: &[T], f: impl Fn(f64) -> bool) -> Vec<bool> {
        v.iter().map(|x| f(x.value())).collect()
    }
    let out = match x.data() {
        TensorData::Float(v) => run(v, f),
        TensorData::Double(v) => run(v, f),
        TensorData::Float16(v) => run(v, f),
        TensorData::Bfloat16(v) => run(v, f),
        TensorData::Float8E4M3FN(v) => run(v, f),
        TensorData::Float8E4M3FNUZ(v) => run(v, f),
        TensorData::Float8E5M2(v) => run(v, f),
        TensorData::Float8E5M2FNUZ(v) => run(v, f),
        other => return Err(unsupported(other.dtype())),
    };
    Ok(Tensor::from_vec(x.shape().to_vec(), out)?)
}

/// ONNX IsNaN (opsets 9, 13, 20), on float, double, float16, bfloat16 and the float8 types.
struct IsNaNKernel;

impl Kernel for IsNaNKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        Ok(vec![classify(inputs.tensor(0)?, f64::is_nan)?.into()])
    }
}

/// ONNX IsInf (opsets 10, 20): `detect_positive` and `detect_negative` (both default 1) select
/// which infinities count.
struct IsInfKernel {
    positive: bool,
    negative: bool,
}

fn build_isinf(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(IsInfKernel {
        positive: info.attr_int("detect_positive", 1)? != 0,
        negative: info.attr_int("detect_negative", 1)? != 0,
    }))
}

impl Kernel for IsInfKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (pos, neg) = (self.positive, self.negative);
        let out = classify(inputs.tensor(0)?, |v| {
            (pos && v == f64::INFINITY) || (neg && v == f64::NEG_INFINITY)
        })?;
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use runnx_ir::AttributeValue;

    use super::*;
    use crate::ops::elementwise::tests::{run_op, t};

    fn run1(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttributeValue)>,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        run_op(op, opset, attrs, inputs).unwrap().remove(0)
    }

    fn f32s(x: &Tensor) -> Vec<f32> {
        x.as_slice::<f32>().unwrap().to_vec()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    #[test]
    fn bias_gelu_adds_the_bias_along_the_last_axis() {
        let x: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let bias = vec![0.5f32, -1.0, 2.0];
        let ins = Inputs::new(vec![
            Some(Tensor::from_vec([2, 3], x.clone()).unwrap().into()),
            Some(Tensor::from_vec([3], bias.clone()).unwrap().into()),
        ]);
        let out = BiasGelu.run(ins).unwrap();
        let got = out[0]
            .as_tensor()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        // Gelu(v) = v·Φ(v), Φ from erf in f64.
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = f64::from(v + bias[i % 3]);
                (0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))) as f32
            })
            .collect();
        assert!(close(&got, &want, 1e-6), "{got:?} vs {want:?}");
        let wrong = Inputs::new(vec![
            Some(Tensor::from_vec([2, 3], x).unwrap().into()),
            Some(Tensor::from_vec([2], vec![0f32; 2]).unwrap().into()),
        ]);
        assert!(BiasGelu.run(wrong).is_err());
    }

    #[test]
    fn round_is_half_to_even() {
        let x = t(&[7], vec![0.9f32, 2.5, 2.3, 1.5, -4.5, -0.5, 0.5]);
        assert_eq!(
            f32s(&run1("Round", 11, vec![], vec![x])),
            vec![1.0, 2.0, 2.0, 2.0, -4.0, -0.0, 0.0]
        );
    }

    #[test]
    fn erf_is_accurate() {
        // erf values from a 50-digit reference (mpmath).
        let cases: [(f64, f64); 5] = [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (-3.0, -0.999_977_909_503_001_4),
        ];
        for (x, want) in cases {
            let got = Real::erf(x as f32) as f64;
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "erf({x}) = {got}, want {want}"
            );
            assert!(((Real::erf(x) - want) / want).abs() < 1e-15);
        }
    }

    #[test]
    fn activations_by_hand() {
        let x = || t(&[4], vec![-2.0f32, -0.5, 0.0, 3.0]);
        let y = f32s(&run1(
            "LeakyRelu",
            16,
            vec![("alpha", AttributeValue::Float(0.1))],
            vec![x()],
        ));
        assert_eq!(y, vec![-0.2, -0.05, 0.0, 3.0]);
        let y = f32s(&run1("HardSigmoid", 6, vec![], vec![x()]));
        assert!(close(&y, &[0.1, 0.4, 0.5, 1.0], 1e-6));
        let y = f32s(&run1("HardSwish", 14, vec![], vec![x()]));
        assert!(close(
            &y,
            &[-2.0 * (1.0 / 6.0), -0.5 * (5.0 / 12.0), 0.0, 3.0],
            1e-6
        ));
        let y = f32s(&run1(
            "ThresholdedRelu",
            10,
            vec![("alpha", AttributeValue::Float(0.0))],
            vec![x()],
        ));
        assert_eq!(y, vec![0.0, 0.0, 0.0, 3.0]);
        let y = f32s(&run1(
            "Sigmoid",
            13,
            vec![],
            vec![t(&[3], vec![-100.0f32, 0.0, 100.0])],
        ));
        assert!(close(&y, &[0.0, 0.5, 1.0], 1e-7));
        let y = f32s(&run1(
            "Softplus",
            1,
            vec![],
            vec![t(&[3], vec![-100.0f32, 0.0, 100.0])],
        ));
        assert!(close(&y, &[0.0, std::f32::consts::LN_2, 100.0], 1e-7));
        let y = f32s(&run1(
            "Celu",
            12,
            vec![("alpha", AttributeValue::Float(2.0))],
            vec![x()],
        ));
        assert!(close(
            &y,
            &[
                2.0 * ((-1.0f32).exp() - 1.0),
                2.0 * ((-0.25f32).exp() - 1.0),
                0.0,
                3.0
            ],
            1e-6
        ));
        let y = f32s(&run1("Gelu", 20, vec![], vec![t(&[2], vec![1.0f32, -1.0])]));
        assert!(close(&y, &[0.841_344_75, -0.158_655_25], 1e-6));
        let tanh = vec![("approximate", AttributeValue::String(b"tanh".to_vec()))];
        let y = f32s(&run1("Gelu", 20, tanh, vec![t(&[1], vec![1.0f32])]));
        assert!(close(&y, &[0.841_192], 1e-5));
        assert!(run_op(
            "Gelu",
            20,
            vec![("approximate", AttributeValue::String(b"x".to_vec()))],
            vec![x()]
        )
        .is_err());
    }

    #[test]
    fn half_types_round_through_f32() {
        let x = t(
            &[3],
            vec![f16::from_f32(0.0), f16::from_f32(1.0), f16::from_f32(-1.0)],
        );
        let y = run1("Exp", 13, vec![], vec![x]);
        let v: Vec<f32> = y
            .as_slice::<f16>()
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect();
        assert_eq!(
            v,
            vec![
                1.0,
                f16::from_f32(std::f32::consts::E).to_f32(),
                f16::from_f32((-1.0f32).exp()).to_f32()
            ]
        );
        // Large enough to take the parallel path.
        let x = t(&[100_000], vec![bf16::from_f32(4.0); 100_000]);
        let y = run1("Sqrt", 13, vec![], vec![x]);
        assert!(y
            .as_slice::<bf16>()
            .unwrap()
            .iter()
            .all(|v| v.to_f32() == 2.0));
    }

    #[test]
    fn numeric_ops_on_integers() {
        let x = || t(&[4], vec![-128i8, -3, 0, 5]);
        assert_eq!(
            run1("Abs", 13, vec![], vec![x()]).as_slice::<i8>().unwrap(),
            &[-128, 3, 0, 5]
        );
        assert_eq!(
            run1("Neg", 13, vec![], vec![x()]).as_slice::<i8>().unwrap(),
            &[-128, 3, 0, -5]
        );
        assert_eq!(
            run1("Sign", 13, vec![], vec![x()])
                .as_slice::<i8>()
                .unwrap(),
            &[-1, -1, 0, 1]
        );
        assert_eq!(
            run1("Relu", 14, vec![], vec![x()])
                .as_slice::<i8>()
                .unwrap(),
            &[0, 0, 0, 5]
        );
        let y = f32s(&run1(
            "Sign",
            13,
            vec![],
            vec![t(&[3], vec![-2.0f32, 0.0, f32::NAN])],
        ));
        assert!(y[0] == -1.0 && y[1] == 0.0 && y[2].is_nan());
        // Erf-9 on integers goes through f64.
        let y = run1("Erf", 9, vec![], vec![t(&[2], vec![0i32, 10])]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0, 1]);
    }

    #[test]
    fn clip_versions() {
        let x = || t(&[5], vec![-3.0f32, -1.0, 0.5, 2.0, f32::NAN]);
        let attrs = vec![
            ("min", AttributeValue::Float(-1.5)),
            ("max", AttributeValue::Float(1.0)),
        ];
        let y = f32s(&run1("Clip", 6, attrs, vec![x()]));
        assert!(y[..4] == [-1.5, -1.0, 0.5, 1.0] && y[4].is_nan());
        let y = f32s(&run1("Clip", 6, vec![], vec![x()]));
        assert_eq!(y[..4], [-3.0, -1.0, 0.5, 2.0]);
        let y = f32s(&run1("Clip", 13, vec![], vec![x(), t(&[], vec![0.0f32])]));
        assert_eq!(y[..4], [0.0, 0.0, 0.5, 2.0]);
        // min > max: everything becomes max
        let y = f32s(&run1(
            "Clip",
            13,
            vec![],
            vec![x(), t(&[], vec![2.0f32]), t(&[], vec![1.0f32])],
        ));
        assert_eq!(y[..4], [1.0, 1.0, 1.0, 1.0]);
        let y = run1(
            "Clip",
            13,
            vec![],
            vec![
                t(&[3], vec![-5i64, 3, 9]),
                t(&[], vec![0i64]),
                t(&[], vec![4i64]),
            ],
        );
        assert_eq!(y.as_slice::<i64>().unwrap(), &[0, 3, 4]);
        assert!(run_op("Clip", 13, vec![], vec![x(), t(&[], vec![0.0f64])]).is_err());
        assert!(run_op("Clip", 13, vec![], vec![x(), t(&[2], vec![0.0f32, 1.0])]).is_err());
    }

    #[test]
    fn shrink_and_classification() {
        let attrs = vec![
            ("lambd", AttributeValue::Float(1.5)),
            ("bias", AttributeValue::Float(1.5)),
        ];
        let y = run1("Shrink", 9, attrs, vec![t(&[5], vec![-2i32, -1, 0, 1, 2])]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0, 0, 0, 0, 0]);
        let y = run1("Shrink", 9, vec![], vec![t(&[3], vec![-2.0f32, 0.2, 2.0])]);
        assert_eq!(f32s(&y), vec![-2.0, 0.0, 2.0]);
        let x = || t(&[4], vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1.0]);
        let y = run1("IsNaN", 13, vec![], vec![x()]);
        assert_eq!(y.as_slice::<bool>().unwrap(), &[false, false, true, false]);
        let y = run1(
            "IsInf",
            10,
            vec![("detect_negative", AttributeValue::Int(0))],
            vec![x()],
        );
        assert_eq!(y.as_slice::<bool>().unwrap(), &[true, false, false, false]);
        let y = run1(
            "IsNaN",
            20,
            vec![],
            vec![t(&[2], vec![F8E4M3FN(0x7F), F8E4M3FN(0x01)])],
        );
        assert_eq!(y.as_slice::<bool>().unwrap(), &[true, false]);
    }

    #[test]
    fn shared_input_is_not_modified() {
        let x = t(&[2], vec![1.0f32, 4.0]);
        let y = run1("Sqrt", 13, vec![], vec![x.clone()]);
        assert_eq!(f32s(&x), vec![1.0, 4.0]);
        assert_eq!(f32s(&y), vec![1.0, 2.0]);
    }
}
