//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
//! ReduceLogSum, ReduceLogSumExp, ReduceSumSquare (opsets 1 to 28) and ArgMax, ArgMin (1 to 13).
//!
//! Every reduction is a [`Fold`]: an identity, a step folding one element into an accumulator,
//! and a merge of two partial accumulators. The input is viewed through a [`Layout`] (size-1
//! dimensions dropped, neighbouring kept or reduced dimensions merged). When the reduced
//! dimensions are contiguous, which is the common case, it is `[outer, reduced, inner]`: with
//! `inner == 1` each output folds one contiguous row (eight interleaved accumulators in blocks, so
//! float sums stay accurate and vectorise), otherwise each output row accumulates `reduced` input
//! rows elementwise. Both are parallel over output chunks for large inputs. Other layouts fall
//! back to a single-threaded walk that still folds whole innermost runs at a time.
//!
//! Accumulation: float16 and bfloat16 in f32, f32 in f32, f64 in f64, integers in their own
//! type with wrapping arithmetic. Reductions over an empty set give the fold's identity: 0 for
//! sums, 1 for products, -inf (or the type's minimum, or false) for max, +inf (maximum, true) for
//! min, -inf for the log-sums, NaN for a float mean (0 for an integer mean).

use half::{bf16, f16};
use rayon::prelude::*;
use runnx_ir::{Element, Shape, Tensor, TensorData, Value};
use smallvec::SmallVec;

use crate::kernels::broadcast::PARALLEL_MIN_LEN;
use crate::registry::BuildFn;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    use Reduction as R;
    let reductions: [(&'static str, &[i64], BuildFn); 10] = [
        ("ReduceSum", &[1, 11, 13], |i| build_reduce(i, R::Sum)),
        ("ReduceMean", &[1, 11, 13, 18], |i| build_reduce(i, R::Mean)),
        ("ReduceMax", &[1, 11, 12, 13, 18, 20], |i| {
            build_reduce(i, R::Max)
        }),
        ("ReduceMin", &[1, 11, 12, 13, 18, 20], |i| {
            build_reduce(i, R::Min)
        }),
        ("ReduceProd", &[1, 11, 13, 18], |i| build_reduce(i, R::Prod)),
        ("ReduceL1", &[1, 11, 13, 18], |i| build_reduce(i, R::L1)),
        ("ReduceL2", &[1, 11, 13, 18], |i| build_reduce(i, R::L2)),
        ("ReduceLogSum", &[1, 11, 13, 18, 28], |i| {
            build_reduce(i, R::LogSum)
        }),
        ("ReduceLogSumExp", &[1, 11, 13, 18, 28], |i| {
            build_reduce(i, R::LogSumExp)
        }),
        ("ReduceSumSquare", &[1, 11, 13, 18], |i| {
            build_reduce(i, R::SumSquare)
        }),
    ];
    for (name, versions, build) in reductions {
        reg.add_versions("", name, versions, build);
    }
    reg.add_versions("", "ArgMax", &[1, 11, 12, 13], |i| {
        build_arg(i, ArgKind::Max)
    });
    reg.add_versions("", "ArgMin", &[1, 11, 12, 13], |i| {
        build_arg(i, ArgKind::Min)
    });
}

// ---------------------------------------------------------------------------------------------
// Reduce* ops

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl Reduction {
    /// The opset from which `axes` is an optional input instead of an attribute.
    fn axes_input_since(self) -> i64 {
        if self == Reduction::Sum {
            13
        } else {
            18
        }
    }
}

/// Where a reduction's axes come from.
#[derive(Debug)]
enum Axes {
    /// Before opset 13 (ReduceSum) or 18 (the others): the `axes` attribute; absent means all.
    Attribute(Option<Vec<i64>>),
    /// Later: the optional input 1; absent or empty means all, or none with
    /// `noop_with_empty_axes`.
    Input { noop_with_empty_axes: bool },
}

/// One Reduce* node: every version of every Reduce* op.
#[derive(Debug)]
struct ReduceKernel {
    op: Reduction,
    axes: Axes,
    keepdims: bool,
}

fn build_reduce(info: &NodeInfo, op: Reduction) -> Result<Box<dyn Kernel>, OpError> {
    let keepdims = parse_bool(info, "keepdims", true)?;
    let axes = if info.opset < op.axes_input_since() {
        Axes::Attribute(info.attr_ints_opt("axes")?)
    } else {
        if info.has_attr("axes") {
            return Err(OpError::attribute(
                "axes",
                format!(
                    "is an input from opset {}, not an attribute",
                    op.axes_input_since()
                ),
            ));
        }
        Axes::Input {
            noop_with_empty_axes: parse_bool(info, "noop_with_empty_axes", false)?,
        }
    };
    Ok(Box::new(ReduceKernel { op, axes, keepdims }))
}

/// A 0/1 integer attribute.
fn parse_bool(info: &NodeInfo, name: &str, default: bool) -> Result<bool, OpError> {
    match info.attr_int(name, default as i64)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(OpError::attribute(
            name,
            format!("must be 0 or 1, got {other}"),
        )),
    }
}

impl Kernel for ReduceKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let rank = x.rank();
        let reduced = match &self.axes {
            Axes::Attribute(None) => vec![true; rank],
            Axes::Attribute(Some(axes)) => reduced_mask(axes, rank, false)?,
            Axes::Input {
                noop_with_empty_axes,
            } => {
                let axes = match inputs.opt_tensor(1)? {
                    Some(t) => t
                        .to_i64_vec()
                        .map_err(|e| OpError::input(1, e.to_string()))?,
                    None => Vec::new(),
                };
                reduced_mask(&axes, rank, *noop_with_empty_axes)?
            }
        };
        let layout = Layout::new(x.shape(), &reduced);
        let out_shape = reduced_shape(x.shape(), &reduced, self.keepdims);
        let data = reduce_data(self.op, x.data(), &layout)?;
        Ok(vec![Value::Tensor(Tensor::new(out_shape, data)?)])
    }
}

/// Which of `rank` dimensions `axes` reduces. Empty `axes` reduce everything, or nothing when
/// `noop_if_empty`. Axes may be negative; out-of-range and repeated axes are errors.
fn reduced_mask(axes: &[i64], rank: usize, noop_if_empty: bool) -> Result<Vec<bool>, OpError> {
    if axes.is_empty() {
        return Ok(vec![!noop_if_empty; rank]);
    }
    let mut mask = vec![false; rank];
    for &axis in axes {
        let a = normalize_axis(axis, rank)?;
        if std::mem::replace(&mut mask[a], true) {
            return Err(OpError::invalid(format!(
                "axis {axis} is repeated in {axes:?}"
            )));
        }
    }
    Ok(mask)
}

/// `axis` in `[-rank, rank - 1]` as an index.
fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if (-r..r).contains(&axis) {
        Ok(if axis < 0 { axis + r } else { axis } as usize)
    } else {
        Err(OpError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )))
    }
}

/// The output shape: reduced dimensions become 1 with `keepdims`, else disappear.
fn reduced_shape(shape: &[usize], reduced: &[bool], keepdims: bool) -> Shape {
    shape
        .iter()
        .zip(reduced)
        .filter_map(|(&d, &r)| match (r, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// Reduces `data` by `op`, keeping its element type.
fn reduce_data(op: Reduction, data: &TensorData, layout: &Layout) -> Result<TensorData, OpError> {
    use TensorData as D;
    Ok(match data {
        D::Float(x) => D::Float(reduce_numeric(op, x, layout)),
        D::Double(x) => D::Double(reduce_numeric(op, x, layout)),
        D::Float16(x) => D::Float16(reduce_numeric(op, x, layout)),
        D::Bfloat16(x) => D::Bfloat16(reduce_numeric(op, x, layout)),
        D::Int8(x) => D::Int8(reduce_numeric(op, x, layout)),
        D::Int16(x) => D::Int16(reduce_numeric(op, x, layout)),
        D::Int32(x) => D::Int32(reduce_numeric(op, x, layout)),
        D::Int64(x) => D::Int64(reduce_numeric(op, x, layout)),
        D::Uint8(x) => D::Uint8(reduce_numeric(op, x, layout)),
        D::Uint16(x) => D::Uint16(reduce_numeric(op, x, layout)),
        D::Uint32(x) => D::Uint32(reduce_numeric(op, x, layout)),
        D::Uint64(x) => D::Uint64(reduce_numeric(op, x, layout)),
        D::Bool(x) if matches!(op, Reduction::Max | Reduction::Min) => {
            D::Bool(reduce_bool(op, x, layout))
        }
        other => {
            return Err(OpError::unsupported(format!(
                "element type {} is not supported by {op:?}",
                other.dtype()
            )))
        }
    })
}

/// ReduceMax (any) and ReduceMin (all) of booleans, `false < true`.
fn reduce_bool(op: Reduction, x: &[bool], layout: &Layout) -> Vec<bool> {
    let any = |a: bool, b: bool| a | b;
    let all = |a: bool, b: bool| a & b;
    if op == Reduction::Max {
        fold(x, layout, &Fold::new(false, move |a, v, _| any(a, v), any))
    } else {
        fold(x, layout, &Fold::new(true, move |a, v, _| all(a, v), all))
    }
}

/// Every arithmetic reduction of one numeric element type.
fn reduce_numeric<T: Reducible>(op: Reduction, x: &[T], layout: &Layout) -> Vec<T> {
    let count = layout.reduced_len;
    let finish = |acc: Vec<T::Acc>, f: fn(T::Acc) -> T::Acc| {
        acc.into_iter().map(|a| T::from_acc(f(a))).collect()
    };
    match op {
        Reduction::Sum => finish(sum_of(x, layout, |v| v), |a| a),
        Reduction::Mean => sum_of(x, layout, |v| v)
            .into_iter()
            .map(|a| T::from_acc(a.div_count(count)))
            .collect(),
        Reduction::SumSquare => finish(sum_of(x, layout, |v| v.mul(v)), |a| a),
        Reduction::L1 => finish(sum_of(x, layout, Accumulator::abs), |a| a),
        Reduction::L2 => finish(sum_of(x, layout, |v| v.mul(v)), Accumulator::sqrt),
        Reduction::LogSum => finish(sum_of(x, layout, |v| v), Accumulator::ln),
        Reduction::Prod => {
            let mul = |a: T::Acc, b: T::Acc| a.mul(b);
            let acc = fold(
                x,
                layout,
                &Fold::new(T::Acc::ONE, move |a, v: T, _| mul(a, v.to_acc()), mul),
            );
            finish(acc, |a| a)
        }
        Reduction::Max => finish(max_of(x, layout), |a| a),
        Reduction::Min => {
            #[allow(clippy::eq_op)] // `b != b` is the generic NaN test.
            let min = |a: T::Acc, b: T::Acc| if b < a || b != b { b } else { a };
            let acc = fold(
                x,
                layout,
                &Fold::new(T::Acc::HIGHEST, move |a, v: T, _| min(a, v.to_acc()), min),
            );
            finish(acc, |a| a)
        }
        Reduction::LogSumExp if !T::Acc::IS_FLOAT => {
            // Integer inputs (allowed before opset 28) go through f64 and truncate back.
            let wide: Vec<f64> = x.iter().map(|v| v.to_acc().to_f64()).collect();
            let out = reduce_numeric(op, &wide, layout);
            out.into_iter()
                .map(|v| T::from_acc(T::Acc::from_f64(v)))
                .collect()
        }
        Reduction::LogSumExp => log_sum_exp(x, layout),
    }
}

/// `ln(sum(exp(x)))`, shifted by each output's maximum so `exp` cannot overflow.
fn log_sum_exp<T: Reducible>(x: &[T], layout: &Layout) -> Vec<T> {
    let zero = T::Acc::ZERO;
    // An infinite or NaN maximum cannot shift: 0 gives the right inf, -inf or NaN.
    let shift: Vec<T::Acc> = max_of(x, layout)
        .into_iter()
        .map(|m| if m.is_finite() { m } else { zero })
        .collect();
    let add = |a: T::Acc, b: T::Acc| a.add(b);
    let shifted = &shift;
    let sums = fold(
        x,
        layout,
        &Fold::new(
            zero,
            move |a, v: T, o| add(a, v.to_acc().sub(shifted[o]).exp()),
            add,
        ),
    );
    sums.into_iter()
        .zip(&shift)
        .map(|(s, &m)| T::from_acc(s.ln().add(m)))
        .collect()
}

/// `sum(f(x))` in the accumulator type.
fn sum_of<T: Reducible>(
    x: &[T],
    layout: &Layout,
    f: impl Fn(T::Acc) -> T::Acc + Sync,
) -> Vec<T::Acc> {
    let add = |a: T::Acc, b: T::Acc| a.add(b);
    fold(
        x,
        layout,
        &Fold::new(T::Acc::ZERO, move |a, v: T, _| add(a, f(v.to_acc())), add),
    )
}

/// The maximum in the accumulator type; NaN wins.
fn max_of<T: Reducible>(x: &[T], layout: &Layout) -> Vec<T::Acc> {
    #[allow(clippy::eq_op)] // `b != b` is the generic NaN test.
    let max = |a: T::Acc, b: T::Acc| if b > a || b != b { b } else { a };
    fold(
        x,
        layout,
        &Fold::new(T::Acc::LOWEST, move |a, v: T, _| max(a, v.to_acc()), max),
    )
}

/// An element type the arithmetic reductions accept, with the type it accumulates in.
trait Reducible: Element + Copy {
    type Acc: Accumulator;
    fn to_acc(self) -> Self::Acc;
    fn from_acc(acc: Self::Acc) -> Self;
}

/// Arithmetic of an accumulator: wrapping for integers, IEEE for floats.
trait Accumulator: Copy + Send + Sync + PartialOrd + 'static {
    const IS_FLOAT: bool;
    const ZERO: Self;
    const ONE: Self;
    /// The identity of max: -inf, or the integer minimum.
    const LOWEST: Self;
    /// The identity of min: +inf, or the integer maximum.
    const HIGHEST: Self;
    fn add(self, rhs: Self) -> Self;
    fn sub(self, rhs: Self) -> Self;
    fn mul(self, rhs: Self) -> Self;
    fn abs(self) -> Self;
    /// The mean of `count` elements summing to `self` (integers truncate; 0 for no elements).
    fn div_count(self, count: usize) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn is_finite(self) -> bool;
    fn to_f64(self) -> f64;
    /// Truncates toward zero and saturates for integers.
    fn from_f64(v: f64) -> Self;
}

macro_rules! float_accumulator {
    ($($t:ty),*) => {$(
        impl Accumulator for $t {
            const IS_FLOAT: bool = true;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            fn add(self, rhs: Self) -> Self { self + rhs }
            fn sub(self, rhs: Self) -> Self { self - rhs }
            fn mul(self, rhs: Self) -> Self { self * rhs }
            fn abs(self) -> Self { <$t>::abs(self) }
            fn div_count(self, count: usize) -> Self { self / count as $t }
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            fn ln(self) -> Self { <$t>::ln(self) }
            fn exp(self) -> Self { <$t>::exp(self) }
            fn is_finite(self) -> bool { <$t>::is_finite(self) }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
        }
    )*};
}

macro_rules! integer_accumulator {
    ($($t:ty),*) => {$(
        impl Accumulator for $t {
            const IS_FLOAT: bool = false;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn add(self, rhs: Self) -> Self { self.wrapping_add(rhs) }
            fn sub(self, rhs: Self) -> Self { self.wrapping_sub(rhs) }
            fn mul(self, rhs: Self) -> Self { self.wrapping_mul(rhs) }
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if self < 0 { self.wrapping_neg() } else { self } }
            fn div_count(self, count: usize) -> Self {
                match <$t>::try_from(count) {
                    Ok(0) => 0,
                    Ok(n) => self.wrapping_div(n),
                    Err(_) => (self as f64 / count as f64) as $t,
                }
            }
            fn sqrt(self) -> Self { Self::from_f64(self.to_f64().sqrt()) }
            fn ln(self) -> Self { Self::from_f64(self.to_f64().ln()) }
            fn exp(self) -> Self { Self::from_f64(self.to_f64().exp()) }
            fn is_finite(self) -> bool { true }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
        }
        impl Reducible for $t {
            type Acc = $t;
            fn to_acc(self) -> $t { self }
            fn from_acc(acc: $t) -> $t { acc }
        }
    )*};
}

float_accumulator!(f32, f64);
integer_accumulator!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Reducible for f32 {
    type Acc = f32;
    fn to_acc(self) -> f32 {
        self
    }
    fn from_acc(acc: f32) -> f32 {
        acc
    }
}

impl Reducible for f64 {
    type Acc = f64;
    fn to_acc(self) -> f64 {
        self
    }
    fn from_acc(acc: f64) -> f64 {
        acc
    }
}

impl Reducible for f16 {
    type Acc = f32;
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    fn from_acc(acc: f32) -> f16 {
        f16::from_f32(acc)
    }
}

impl Reducible for bf16 {
    type Acc = f32;
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    fn from_acc(acc: f32) -> bf16 {
        bf16::from_f32(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// The reduction engine

/// A reduction as a fold: every output starts at `init`, `step(acc, x, o)` folds element `x`
/// into output `o`'s accumulator, and `merge` combines two partial accumulators (it must be
/// associative and commutative, with `init` as identity).
struct Fold<A, S, M> {
    init: A,
    step: S,
    merge: M,
}

impl<A, S, M> Fold<A, S, M> {
    fn new<T>(init: A, step: S, merge: M) -> Self
    where
        S: Fn(A, T, usize) -> A,
        M: Fn(A, A) -> A,
    {
        Fold { init, step, merge }
    }
}

/// A reduction's input shape with size-1 dimensions dropped and neighbouring dimensions that
/// are both kept or both reduced merged, so kept and reduced runs alternate.
#[derive(Debug)]
struct Layout {
    /// `(size, reduced)`, outermost first.
    dims: SmallVec<[(usize, bool); 6]>,
    /// Number of outputs.
    out_len: usize,
    /// Number of elements folded into each output.
    reduced_len: usize,
}

impl Layout {
    fn new(shape: &[usize], reduced: &[bool]) -> Layout {
        let mut dims: SmallVec<[(usize, bool); 6]> = SmallVec::new();
        for (&size, &r) in shape.iter().zip(reduced) {
            match dims.last_mut() {
                _ if size == 1 => {}
                Some((last, last_r)) if *last_r == r => *last *= size,
                _ => dims.push((size, r)),
            }
        }
        let part = |want: bool| -> usize {
            let dims = shape.iter().zip(reduced).filter(|(_, &r)| r == want);
            dims.map(|(&d, _)| d).product()
        };
        Layout {
            dims,
            out_len: part(false),
            reduced_len: part(true),
        }
    }

    /// `[outer, reduced, inner]` when the reduced dimensions are contiguous.
    fn contiguous(&self) -> Option<(usize, usize, usize)> {
        match self.dims.as_slice() {
            [] => Some((1, 1, 1)),
            [(k, false)] => Some((*k, 1, 1)),
            [(r, true)] => Some((1, *r, 1)),
            [(k, false), (r, true)] => Some((*k, *r, 1)),
            [(r, true), (i, false)] => Some((1, *r, *i)),
            [(k, false), (r, true), (i, false)] => Some((*k, *r, *i)),
            _ => None,
        }
    }
}

/// Runs `fold` over `x` laid out as `layout`, one accumulator per output.
fn fold<T, A, S, M>(x: &[T], layout: &Layout, fold: &Fold<A, S, M>) -> Vec<A>
where
    T: Copy + Sync,
    A: Copy + Send + Sync,
    S: Fn(A, T, usize) -> A + Sync,
    M: Fn(A, A) -> A + Sync,
{
    let mut out = vec![fold.init; layout.out_len];
    if x.is_empty() {
        return out;
    }
    match layout.contiguous() {
        Some((_, reduced, 1)) => for_output_chunks(&mut out, x.len(), |start, chunk| {
            for (i, acc) in chunk.iter_mut().enumerate() {
                let o = start + i;
                *acc = fold_row(&x[o * reduced..(o + 1) * reduced], o, fold);
            }
        }),
        Some((_, reduced, inner)) => for_output_chunks(&mut out, x.len(), |start, chunk| {
            fold_columns(x, reduced, inner, start, chunk, fold)
        }),
        None => fold_strided(x, &layout.dims, &mut out, fold),
    }
    out
}

/// Calls `f(start, chunk)` on chunks of `out` (`start` is the chunk's first index), in parallel
/// when the reduction reads at least `PARALLEL_MIN_LEN` elements.
fn for_output_chunks<A: Send>(out: &mut [A], work: usize, f: impl Fn(usize, &mut [A]) + Sync) {
    let tasks = 4 * rayon::current_num_threads();
    if work < PARALLEL_MIN_LEN || out.len() < 2 || tasks <= 4 {
        return f(0, out);
    }
    let chunk = out.len().div_ceil(tasks);
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
}

/// Folds one contiguous run into a fresh accumulator for output `o`.
///
/// Blocks of `BLOCK` elements are each folded in `LANES` interleaved accumulators, then merged:
/// the independent chains vectorise, and a float sum's rounding error grows with about
/// `BLOCK / LANES + len / BLOCK` rather than `len`.
fn fold_row<T, A, S, M>(row: &[T], o: usize, fold: &Fold<A, S, M>) -> A
where
    T: Copy,
    A: Copy,
    S: Fn(A, T, usize) -> A,
    M: Fn(A, A) -> A,
{
    const LANES: usize = 8;
    const BLOCK: usize = 1024;
    let mut total = fold.init;
    for block in row.chunks(BLOCK) {
        let mut lanes = [fold.init; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for (lane, &v) in lanes.iter_mut().zip(c) {
                *lane = (fold.step)(*lane, v, o);
            }
        }
        let mut acc = chunks
            .remainder()
            .iter()
            .fold(fold.init, |a, &v| (fold.step)(a, v, o));
        for lane in lanes {
            acc = (fold.merge)(acc, lane);
        }
        total = (fold.merge)(total, acc);
    }
    total
}

/// Folds the outputs `start..start + out.len()` of `x` viewed as `[outer, reduced, inner]`:
/// each output row `o` accumulates the `reduced` rows of its block elementwise, a column block
/// at a time so the accumulators stay in cache.
fn fold_columns<T, A, S, M>(
    x: &[T],
    reduced: usize,
    inner: usize,
    start: usize,
    out: &mut [A],
    fold: &Fold<A, S, M>,
) where
    T: Copy,
    A: Copy,
    S: Fn(A, T, usize) -> A,
    M: Fn(A, A) -> A,
{
    const COLUMNS: usize = 1024;
    let mut pos = start;
    let mut rest = out;
    while !rest.is_empty() {
        let (o, j0) = (pos / inner, pos % inner);
        let width = rest.len().min(inner - j0).min(COLUMNS);
        let (accs, tail) = rest.split_at_mut(width);
        let block = &x[o * reduced * inner..(o + 1) * reduced * inner];
        for row in block.chunks_exact(inner) {
            for (j, (acc, &v)) in accs.iter_mut().zip(&row[j0..j0 + width]).enumerate() {
                *acc = (fold.step)(*acc, v, pos + j);
            }
        }
        pos += width;
        rest = tail;
    }
}

/// The general case: reduced dimensions that are not contiguous. Walks `x` in order one
/// innermost run at a time, tracking the output offset of each run with an odometer.
fn fold_strided<T, A, S, M>(x: &[T], dims: &[(usize, bool)], out: &mut [A], fold: &Fold<A, S, M>)
where
    T: Copy,
    A: Copy,
    S: Fn(A, T, usize) -> A,
    M: Fn(A, A) -> A,
{
    let Some((&(run, run_reduced), outer)) = dims.split_last() else {
        return;
    };
    // Output stride of each outer dimension (0 for reduced ones).
    let mut out_strides: SmallVec<[usize; 6]> = SmallVec::from_elem(0, outer.len());
    let mut stride = if run_reduced { 1 } else { run };
    for (s, &(size, reduced)) in out_strides.iter_mut().zip(outer).rev() {
        if !reduced {
            *s = stride;
            stride *= size;
        }
    }
    let mut index: SmallVec<[usize; 6]> = SmallVec::from_elem(0, outer.len());
    let mut o = 0;
    for row in x.chunks_exact(run) {
        if run_reduced {
            out[o] = (fold.merge)(out[o], fold_row(row, o, fold));
        } else {
            for (j, (acc, &v)) in out[o..o + run].iter_mut().zip(row).enumerate() {
                *acc = (fold.step)(*acc, v, o + j);
            }
        }
        for d in (0..outer.len()).rev() {
            index[d] += 1;
            o += out_strides[d];
            if index[d] < outer[d].0 {
                break;
            }
            index[d] = 0;
            o -= out_strides[d] * outer[d].0;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ArgMax, ArgMin

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgKind {
    Max,
    Min,
}

/// ArgMax / ArgMin (opsets 1, 11, 12, 13): the int64 index of the first (or, with
/// `select_last_index` from opset 12, the last) extreme element along `axis`. A NaN counts as
/// the extreme, as in numpy.
#[derive(Debug)]
struct ArgKernel {
    kind: ArgKind,
    axis: i64,
    keepdims: bool,
    select_last_index: bool,
}

fn build_arg(info: &NodeInfo, kind: ArgKind) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ArgKernel {
        kind,
        axis: info.attr_int("axis", 0)?,
        keepdims: parse_bool(info, "keepdims", true)?,
        select_last_index: parse_bool(info, "select_last_index", false)?,
    }))
}

impl Kernel for ArgKernel {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let shape = x.shape();
        let axis = normalize_axis(self.axis, shape.len())?;
        let n = shape[axis];
        if n == 0 {
            return Err(OpError::invalid(format!(
                "cannot take {:?} over axis {axis} of size 0 (shape {shape:?})",
                self.kind
            )));
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let dims = (outer, n, inner);
        use TensorData as D;
        let indices = match x.data() {
            D::Float(v) => self.indices(v, dims),
            D::Double(v) => self.indices(v, dims),
            D::Float16(v) => self.indices(v, dims),
            D::Bfloat16(v) => self.indices(v, dims),
            D::Int8(v) => self.indices(v, dims),
            D::Int16(v) => self.indices(v, dims),
            D::Int32(v) => self.indices(v, dims),
            D::Int64(v) => self.indices(v, dims),
            D::Uint8(v) => self.indices(v, dims),
            D::Uint16(v) => self.indices(v, dims),
            D::Uint32(v) => self.indices(v, dims),
            D::Uint64(v) => self.indices(v, dims),
            D::Bool(v) => self.indices(v, dims),
            other => {
                return Err(OpError::unsupported(format!(
                    "element type {} is not supported by Arg{:?}",
                    other.dtype(),
                    self.kind
                )))
            }
        };
        let mut reduced = vec![false; shape.len()];
        reduced[axis] = true;
        let out_shape = reduced_shape(shape, &reduced, self.keepdims);
        Ok(vec![Value::Tensor(Tensor::from_vec(out_shape, indices)?)])
    }
}

impl ArgKernel {
    /// The indices for `x` viewed as `[outer, n, inner]`, with the comparison of this kernel.
    #[allow(clippy::eq_op)] // `v != v` is the generic NaN test.
    fn indices<T: Copy + PartialOrd + Sync>(
        &self,
        x: &[T],
        dims: (usize, usize, usize),
    ) -> Vec<i64> {
        // Whether `v` replaces the current best `b`.
        match (self.kind, self.select_last_index) {
            (ArgKind::Max, false) => arg_extreme(x, dims, |v, b| v > b || (v != v && b == b)),
            (ArgKind::Max, true) => arg_extreme(x, dims, |v, b| v >= b || v != v),
            (ArgKind::Min, false) => arg_extreme(x, dims, |v, b| v < b || (v != v && b == b)),
            (ArgKind::Min, true) => arg_extreme(x, dims, |v, b| v <= b || v != v),
        }
    }
}

/// For `x` viewed as `[outer, n, inner]` (`n > 0`), the index along `n` of the element each
/// output settles on when scanning in order and moving whenever `better(v, best)`.
fn arg_extreme<T: Copy + Sync>(
    x: &[T],
    (outer, n, inner): (usize, usize, usize),
    better: impl Fn(T, T) -> bool + Sync,
) -> Vec<i64> {
    let mut out = vec![0i64; outer * inner];
    if inner == 1 {
        for_output_chunks(&mut out, x.len(), |start, chunk| {
            for (i, idx) in chunk.iter_mut().enumerate() {
                let row = &x[(start + i) * n..(start + i + 1) * n];
                let mut best = row[0];
                for (k, &v) in row.iter().enumerate().skip(1) {
                    if better(v, best) {
                        best = v;
                        *idx = k as i64;
                    }
                }
            }
        });
    } else {
        for_output_chunks(&mut out, x.len(), |start, chunk| {
            let mut best: Vec<T> = Vec::with_capacity(chunk.len().min(inner));
            let mut pos = start;
            for idxs in chunk_by_outer(chunk, start, inner) {
                let (o, j0) = (pos / inner, pos % inner);
                let block = &x[o * n * inner..(o + 1) * n * inner];
                best.clear();
                best.extend_from_slice(&block[j0..j0 + idxs.len()]);
                for (k, row) in block.chunks_exact(inner).enumerate().skip(1) {
                    let row = &row[j0..j0 + idxs.len()];
                    for ((b, idx), &v) in best.iter_mut().zip(idxs.iter_mut()).zip(row) {
                        if better(v, *b) {
                            *b = v;
                            *idx = k as i64;
                        }
                    }
                }
                pos += idxs.len();
            }
        });
    }
    out
}

/// Splits a chunk of a `[outer, inner]` output starting at flat index `start` into its pieces
/// within one outer row each.
fn chunk_by_outer<A>(
    chunk: &mut [A],
    start: usize,
    inner: usize,
) -> impl Iterator<Item = &mut [A]> {
    let mut pos = start;
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let width = rest.len().min(inner - pos % inner);
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut(width);
        rest = tail;
        pos += width;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use runnx_ir::AttributeValue;

    use super::*;
    use crate::ops::elementwise::tests::{run_op, t};

    fn ints(v: &[i64]) -> AttributeValue {
        AttributeValue::Ints(v.to_vec())
    }

    fn run1(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttributeValue)>,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        run_op(op, opset, attrs, inputs).unwrap().remove(0)
    }

    /// A plain reference: reduces `x` of `shape` over `axes` by `f` starting at `init`.
    fn reference(
        shape: &[usize],
        x: &[f64],
        reduced: &[bool],
        init: f64,
        f: impl Fn(f64, f64) -> f64,
    ) -> Vec<f64> {
        let strides = runnx_ir::strides_of(shape);
        let out_shape: Vec<usize> = shape
            .iter()
            .zip(reduced)
            .map(|(&d, &r)| if r { 1 } else { d })
            .collect();
        let out_strides = runnx_ir::strides_of(&out_shape);
        let mut out = vec![init; out_shape.iter().product()];
        for (i, &v) in x.iter().enumerate() {
            let mut o = 0;
            for d in 0..shape.len() {
                let idx = i / strides[d] % shape[d];
                if !reduced[d] {
                    o += idx * out_strides[d];
                }
            }
            out[o] = f(out[o], v);
        }
        out
    }

    #[test]
    fn sum_matches_a_reference_on_every_axis_subset() {
        for shape in [
            vec![3usize, 4, 5, 2],
            vec![1, 7, 1, 17],
            vec![2, 1, 1000, 3],
        ] {
            let len: usize = shape.iter().product();
            let x: Vec<f64> = (0..len).map(|i| ((i * 37 % 101) as f64) - 50.0).collect();
            for mask in 0..1u32 << shape.len() {
                let reduced: Vec<bool> = (0..shape.len()).map(|d| mask >> d & 1 == 1).collect();
                let axes: Vec<i64> = (0..shape.len() as i64)
                    .filter(|&d| reduced[d as usize])
                    .collect();
                let expected = if axes.is_empty() {
                    x.clone()
                } else {
                    reference(&shape, &x, &reduced, 0.0, |a, b| a + b)
                };
                let out = run1(
                    "ReduceSum",
                    13,
                    vec![("noop_with_empty_axes", AttributeValue::Int(1))],
                    vec![t(&shape, x.clone()), t(&[axes.len()], axes.clone())],
                );
                assert_eq!(
                    out.as_slice::<f64>().unwrap(),
                    expected,
                    "shape {shape:?} axes {axes:?}"
                );
                let expected_max = reference(&shape, &x, &reduced, f64::NEG_INFINITY, f64::max);
                let out = run1(
                    "ReduceMax",
                    13,
                    vec![("axes", ints(&axes))],
                    vec![t(&shape, x.clone())],
                );
                if !axes.is_empty() {
                    assert_eq!(
                        out.as_slice::<f64>().unwrap(),
                        expected_max,
                        "shape {shape:?} axes {axes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_parallel_sums_match_the_serial_result() {
        let x: Vec<f32> = (0..300_000).map(|i| (i % 13) as f32).collect();
        for axes in [vec![0i64], vec![1], vec![2], vec![0, 2]] {
            let shape = [100usize, 30, 100];
            let reduced: Vec<bool> = (0..3).map(|d| axes.contains(&(d as i64))).collect();
            let wide: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let expected = reference(&shape, &wide, &reduced, 0.0, |a, b| a + b);
            let out = run1(
                "ReduceSum",
                11,
                vec![("axes", ints(&axes))],
                vec![t(&shape, x.clone())],
            );
            let got: Vec<f64> = out
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            assert_eq!(got, expected, "axes {axes:?}");
        }
    }

    #[test]
    fn composite_reductions() {
        let x = t(&[2, 2], vec![1.0f32, -2.0, 3.0, -4.0]);
        let axes = vec![("axes", ints(&[1])), ("keepdims", AttributeValue::Int(0))];
        // Opset 11: every Reduce op still takes `axes` as an attribute there.
        let check = |op: &str, expected: [f32; 2]| {
            let out = run1(op, 11, axes.clone(), vec![x.clone()]);
            assert_eq!(out.shape(), &[2]);
            let got = out.as_slice::<f32>().unwrap();
            for (g, e) in got.iter().zip(expected) {
                assert!(
                    (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "{op}: {got:?} vs {expected:?}"
                );
            }
        };
        check("ReduceSum", [-1.0, -1.0]);
        check("ReduceMean", [-0.5, -0.5]);
        check("ReduceProd", [-2.0, -12.0]);
        check("ReduceMin", [-2.0, -4.0]);
        check("ReduceL1", [3.0, 7.0]);
        check("ReduceL2", [5f32.sqrt(), 5.0]);
        check("ReduceSumSquare", [5.0, 25.0]);
        check(
            "ReduceLogSumExp",
            [
                (1f32.exp() + (-2f32).exp()).ln(),
                (3f32.exp() + (-4f32).exp()).ln(),
            ],
        );
        let out = run1(
            "ReduceLogSum",
            13,
            vec![],
            vec![t(&[3], vec![1.0f32, 2.0, 3.0])],
        );
        assert_eq!(out.shape(), &[1]);
        assert!((out.as_slice::<f32>().unwrap()[0] - 6f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn log_sum_exp_is_stable_and_handles_infinities() {
        let x = t(
            &[4, 2],
            vec![
                1000.0f32,
                1000.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                f32::INFINITY,
                0.0,
                -1000.0,
                -1000.0,
            ],
        );
        let out = run1(
            "ReduceLogSumExp",
            18,
            vec![("keepdims", AttributeValue::Int(0))],
            vec![x, t(&[1], vec![1i64])],
        );
        let got = out.as_slice::<f32>().unwrap();
        assert!((got[0] - (1000.0 + 2f32.ln())).abs() < 1e-3, "{got:?}");
        assert_eq!(got[1], f32::NEG_INFINITY);
        assert_eq!(got[2], f32::INFINITY);
        assert!((got[3] - (-1000.0 + 2f32.ln())).abs() < 1e-3, "{got:?}");
    }

    #[test]
    fn empty_sets_give_the_identity() {
        let x = || t(&[2, 0, 4], Vec::<f32>::new());
        let cases = [
            ("ReduceSum", 0.0),
            ("ReduceProd", 1.0),
            ("ReduceMax", f32::NEG_INFINITY),
            ("ReduceMin", f32::INFINITY),
            ("ReduceL2", 0.0),
            ("ReduceLogSum", f32::NEG_INFINITY),
            ("ReduceLogSumExp", f32::NEG_INFINITY),
        ];
        for (op, expected) in cases {
            let out = run1(op, 18, vec![], vec![x(), t(&[1], vec![1i64])]);
            assert_eq!(out.shape(), &[2, 1, 4], "{op}");
            assert!(
                out.as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .all(|&v| v == expected),
                "{op}"
            );
        }
        let out = run1("ReduceMax", 20, vec![], vec![t(&[0], Vec::<i32>::new())]);
        assert_eq!(out.as_slice::<i32>().unwrap(), &[i32::MIN]);
        let out = run1("ReduceMin", 20, vec![], vec![t(&[0], Vec::<bool>::new())]);
        assert_eq!(out.as_slice::<bool>().unwrap(), &[true]);
    }

    #[test]
    fn noop_with_empty_axes_still_applies_the_elementwise_part() {
        let noop = vec![("noop_with_empty_axes", AttributeValue::Int(1))];
        let x = t(&[2], vec![-3.0f32, 4.0]);
        let out = run1("ReduceSumSquare", 18, noop.clone(), vec![x.clone()]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &[9.0, 16.0]);
        let out = run1("ReduceL1", 18, noop.clone(), vec![x.clone()]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &[3.0, 4.0]);
        let out = run1(
            "ReduceSum",
            13,
            noop,
            vec![x.clone(), t(&[0], Vec::<i64>::new())],
        );
        assert_eq!(out.as_slice::<f32>().unwrap(), &[-3.0, 4.0]);
        // Without the flag, empty axes reduce everything.
        let out = run1("ReduceSum", 13, vec![], vec![x, t(&[0], Vec::<i64>::new())]);
        assert_eq!(out.shape(), &[1]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &[1.0]);
    }

    #[test]
    fn integers_wrap_and_means_truncate() {
        let out = run1("ReduceSum", 11, vec![], vec![t(&[2], vec![i32::MAX, 1])]);
        assert_eq!(out.as_slice::<i32>().unwrap(), &[i32::MIN]);
        let out = run1("ReduceMean", 11, vec![], vec![t(&[3], vec![1i64, 2, 4])]);
        assert_eq!(out.as_slice::<i64>().unwrap(), &[2]);
        let out = run1("ReduceL1", 11, vec![], vec![t(&[2], vec![-3i64, 4])]);
        assert_eq!(out.as_slice::<i64>().unwrap(), &[7]);
        let out = run1(
            "ReduceMax",
            20,
            vec![("keepdims", AttributeValue::Int(0))],
            vec![t(&[2, 2], vec![false, true, false, false])],
        );
        assert_eq!(out.as_slice::<bool>().unwrap(), &[true]);
    }

    #[test]
    fn half_types_accumulate_in_f32() {
        // 4096 ones: an f16 accumulator would stop at 2048.
        let x: Vec<f16> = vec![f16::ONE; 4096];
        let out = run1("ReduceSum", 13, vec![], vec![t(&[4096], x)]);
        assert_eq!(out.as_slice::<f16>().unwrap(), &[f16::from_f32(4096.0)]);
        let x: Vec<bf16> = vec![bf16::from_f32(2.0), bf16::from_f32(6.0)];
        let out = run1("ReduceMean", 18, vec![], vec![t(&[2], x)]);
        assert_eq!(out.as_slice::<bf16>().unwrap(), &[bf16::from_f32(4.0)]);
    }

    #[test]
    fn bad_axes_are_errors() {
        let x = || t(&[2, 3], vec![0f32; 6]);
        assert!(run_op("ReduceSum", 11, vec![("axes", ints(&[2]))], vec![x()]).is_err());
        assert!(run_op("ReduceSum", 11, vec![("axes", ints(&[1, -1]))], vec![x()]).is_err());
        assert!(run_op("ReduceMean", 18, vec![], vec![x(), t(&[1], vec![-3i64])]).is_err());
        assert!(run_op("ReduceMean", 18, vec![], vec![x(), t(&[1], vec![0.5f32])]).is_err());
        assert!(run_op(
            "ArgMax",
            13,
            vec![("axis", AttributeValue::Int(2))],
            vec![x()]
        )
        .is_err());
        assert!(run_op("ArgMax", 13, vec![], vec![t(&[0, 2], Vec::<f32>::new())]).is_err());
    }

    #[test]
    fn arg_max_and_min_pick_first_or_last() {
        let x = t(&[2, 3], vec![2.0f32, 5.0, 5.0, 1.0, 1.0, 0.0]);
        let arg = |op: &str, axis: i64, last: i64| {
            let attrs = vec![
                ("axis", AttributeValue::Int(axis)),
                ("keepdims", AttributeValue::Int(0)),
                ("select_last_index", AttributeValue::Int(last)),
            ];
            run1(op, 13, attrs, vec![x.clone()])
                .as_slice::<i64>()
                .unwrap()
                .to_vec()
        };
        assert_eq!(arg("ArgMax", 1, 0), [1, 0]);
        assert_eq!(arg("ArgMax", 1, 1), [2, 1]);
        assert_eq!(arg("ArgMin", -1, 0), [0, 2]);
        assert_eq!(arg("ArgMin", 1, 1), [0, 2]);
        assert_eq!(arg("ArgMax", 0, 0), [0, 0, 0]);
        assert_eq!(arg("ArgMin", 0, 1), [1, 1, 1]);
        let out = run1(
            "ArgMax",
            1,
            vec![],
            vec![t(&[3], vec![1.0f32, f32::NAN, 3.0])],
        );
        assert_eq!(out.shape(), &[1]);
        assert_eq!(out.as_slice::<i64>().unwrap(), &[1]);
    }

    #[test]
    fn arg_max_over_a_middle_axis_in_parallel() {
        let (a, n, b) = (40usize, 50usize, 30usize);
        let x: Vec<i32> = (0..a * n * b).map(|i| ((i * 7919) % 1009) as i32).collect();
        let out = run1(
            "ArgMax",
            13,
            vec![("axis", AttributeValue::Int(1))],
            vec![t(&[a, n, b], x.clone())],
        );
        assert_eq!(out.shape(), &[a, 1, b]);
        let got = out.as_slice::<i64>().unwrap();
        for o in 0..a {
            for j in 0..b {
                let col: Vec<i32> = (0..n).map(|k| x[(o * n + k) * b + j]).collect();
                let max = *col.iter().max().unwrap();
                let first = col.iter().position(|&v| v == max).unwrap() as i64;
                assert_eq!(got[o * b + j], first);
            }
        }
    }
}
