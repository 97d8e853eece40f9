//! Softmax, LogSoftmax and Hardmax.
//!
//! Before opset 13 these ops coerce the input to 2-D at `axis` (default 1) and normalise over
//! everything from `axis` on; from opset 13 they normalise along the single dimension `axis`
//! (default -1). Both cases are a `[outer, len, inner]` view of the input: the old semantics is
//! the new one with `inner = 1` and `len` the product of the trailing dims.
//!
//! float16 and bfloat16 are computed in f32, double in f64.

use rayon::prelude::*;
use runnx_ir::{Tensor, Value};

use super::norm::{max_of, sum, FloatKind, Real};
use super::shape::normalize_axis;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry, RUNNX_DOMAIN};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Softmax", &[1, 11, 13], |info| {
        build(info, Normalizer::Softmax)
    });
    reg.add_versions("", "LogSoftmax", &[1, 11, 13], |info| {
        build(info, Normalizer::LogSoftmax)
    });
    reg.add_versions("", "Hardmax", &[1, 11, 13], |info| {
        build(info, Normalizer::Hardmax)
    });
    reg.add(RUNNX_DOMAIN, "SoftmaxNanTo", 1, build_softmax_nan_to);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Normalizer {
    Softmax,
    LogSoftmax,
    Hardmax,
}

struct SoftmaxKernel {
    kind: Normalizer,
    axis: i64,
    /// Opsets 1 and 11: normalise over the flattened dims from `axis` on.
    coerce_2d: bool,
    /// What NaN results become (runnx's `SoftmaxNanTo`), replaced while the block is in cache.
    nan_to: Option<f32>,
}

fn build(info: &NodeInfo, kind: Normalizer) -> Result<Box<dyn Kernel>, OpError> {
    let coerce_2d = info.opset < 13;
    Ok(Box::new(SoftmaxKernel {
        kind,
        axis: info.attr_int("axis", if coerce_2d { 1 } else { -1 })?,
        coerce_2d,
        nan_to: None,
    }))
}

/// runnx's `SoftmaxNanTo`: opset-13 Softmax along `axis`, with every NaN in the result replaced
/// by the float attribute `value`. The session's optimizer makes it of `Where(IsNaN(s), value,
/// s)` for `s = Softmax(x)`, how exported attention guards its fully masked rows (whose
/// softmax is 0/0).
fn build_softmax_nan_to(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let value = info
        .attr_float_opt("value")?
        .ok_or_else(|| OpError::attribute("value", "is required"))?;
    Ok(Box::new(SoftmaxKernel {
        kind: Normalizer::Softmax,
        axis: info.attr_int("axis", -1)?,
        coerce_2d: false,
        nan_to: Some(value),
    }))
}

/// Below this many elements the rows are processed on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 14;

impl Kernel for SoftmaxKernel {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let y = match FloatKind::of(x.dtype(), 0)? {
            FloatKind::F32 => self.compute::<f32>(x)?,
            FloatKind::F64 => self.compute::<f64>(x)?,
        };
        Ok(vec![Value::Tensor(y)])
    }
}

impl SoftmaxKernel {
    fn compute<R: Real>(&self, x: Tensor) -> Result<Tensor, OpError> {
        let (shape, dtype) = (x.shape().to_vec(), x.dtype());
        let shape = shape.as_slice();
        // A scalar is treated as one element along an implicit axis of length 1.
        let (outer, len, inner) = if shape.is_empty() {
            (1, 1, 1)
        } else {
            let axis = normalize_axis(self.axis, shape.len())?;
            let outer: usize = shape[..axis].iter().product();
            if self.coerce_2d {
                (outer, shape[axis..].iter().product(), 1)
            } else {
                (outer, shape[axis], shape[axis + 1..].iter().product())
            }
        };
        // Normalised in place: the input's own buffer when it is of type R and not shared.
        let mut values = if dtype == R::DTYPE {
            x.into_vec::<R>()?
        } else {
            R::read(&x, 0)?.into_owned()
        };
        if !values.is_empty() {
            let block = len * inner;
            let (kind, nan_to) = (self.kind, self.nan_to.map(R::of));
            let run_block = |chunk: &mut [R]| normalize_block(kind, nan_to, chunk, len, inner);
            if values.len() >= PARALLEL_ELEMENTS {
                values.par_chunks_mut(block).for_each(run_block);
            } else {
                values.chunks_mut(block).for_each(run_block);
            }
            debug_assert_eq!(values.len(), outer * block);
        }
        R::to_tensor(values, dtype, shape)
    }
}

/// Normalises one `[len, inner]` block in place along its first dimension; a softmax row of
/// NaN becomes `nan_to` when given.
fn normalize_block<R: Real>(
    kind: Normalizer,
    nan_to: Option<R>,
    block: &mut [R],
    len: usize,
    inner: usize,
) {
    if inner == 1 {
        normalize_row(kind, nan_to, block);
        return;
    }
    // Strided: gather each column, normalise it contiguously and scatter it back. The
    // normalising axis is rarely the innermost-but-strided one in real models, so clarity wins.
    let mut column = vec![R::zero(); len];
    for j in 0..inner {
        for (i, c) in column.iter_mut().enumerate() {
            *c = block[i * inner + j];
        }
        normalize_row(kind, nan_to, &mut column);
        for (i, c) in column.iter().enumerate() {
            block[i * inner + j] = *c;
        }
    }
}

fn normalize_row<R: Real>(kind: Normalizer, nan_to: Option<R>, row: &mut [R]) {
    if row.is_empty() {
        return;
    }
    match kind {
        Normalizer::Hardmax => {
            // One-hot of the first maximum.
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            for (i, v) in row.iter_mut().enumerate() {
                *v = if i == best { R::one() } else { R::zero() };
            }
        }
        Normalizer::Softmax => {
            R::softmax_in_place(row);
            // Each value is e_i / Σe with e_i = exp(x_i - max) in [0, 1]: a NaN e_i makes the
            // sum NaN, and a NaN sum (an input NaN, a row of -inf, +inf - +inf) makes every
            // value NaN. So a row is all NaN or has none, and its first value tells which.
            if let Some(value) = nan_to.filter(|_| row[0].is_nan()) {
                row.fill(value);
            }
        }
        Normalizer::LogSoftmax => {
            let max = max_of(row);
            row.iter_mut().for_each(|v| *v = *v - max);
            let mut exps = row.to_vec();
            R::exp_in_place(&mut exps);
            let log_sum = sum(&exps).ln();
            row.iter_mut().for_each(|v| *v = *v - log_sum);
        }
    }
}
