//! The operators of transformer-style models: scaled dot-product `Attention` and its preview
//! variants (`FlexAttention` with score/probability subgraphs, the recurrent `LinearAttention`),
//! and their companions: `RotaryEmbedding`, the `Swish`/`SwiGLU` gates, the `TensorScatter` KV
//! cache update and the stateful `CausalConvWithState`.
//!
//! Float16 and bfloat16 inputs are computed in f32 and rounded back; where the ONNX reference
//! rounds an intermediate result to the input type (the attention logits, the probabilities
//! before `P·V`), these kernels round at the same points, so low-precision results agree with
//! it to the last bit or two rather than drifting by the accumulated difference.

mod causal_conv;
mod flex;
mod gates;
mod linear;
mod rotary;
mod sdpa;
mod tensor_scatter;

use half::{bf16, f16};
use runnx_ir::{DataType, Tensor, Value};

use super::norm::Real;
use crate::kernels::gemm::{gemm, Epilogue, Lhs, MatMut, MatRef, Rhs};
use crate::{OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Attention", &[23, 24, 25], sdpa::build);
    reg.add("ai.onnx.preview", "FlexAttention", 1, flex::build);
    reg.add("", "LinearAttention", 27, linear::build);
    reg.add("", "RotaryEmbedding", 23, rotary::build);
    reg.add("", "Swish", 24, gates::build_swish);
    reg.add("", "SwiGLU", 28, gates::build_swiglu);
    reg.add("", "TensorScatter", 24, tensor_scatter::build);
    reg.add("", "CausalConvWithState", 27, causal_conv::build);
}

/// Rounds values computed in `R` to the precision of `dtype` in place: to float16 or bfloat16
/// (or to f32 when computing in f64), a no-op when `dtype` is at least as wide as `R`.
fn round_to<R: Real>(values: &mut [R], dtype: DataType) {
    let mut through = |f: fn(f32) -> f32| {
        values
            .iter_mut()
            .for_each(|x| *x = R::of(f(x.to_f32().unwrap_or(f32::NAN))));
    };
    match dtype {
        DataType::Float16 => through(|x| f16::from_f32(x).to_f32()),
        DataType::Bfloat16 => through(|x| bf16::from_f32(x).to_f32()),
        DataType::Float if R::DTYPE == DataType::Double => through(|x| x),
        _ => {}
    }
}

/// The softmax precision an attribute names (`softmax_precision`): float, float16, double or
/// bfloat16.
fn softmax_precision(code: Option<i64>) -> Result<Option<DataType>, OpError> {
    let Some(code) = code else { return Ok(None) };
    match i32::try_from(code).ok().and_then(DataType::from_onnx) {
        Some(
            dt @ (DataType::Float | DataType::Float16 | DataType::Double | DataType::Bfloat16),
        ) => Ok(Some(dt)),
        _ => Err(OpError::attribute(
            "softmax_precision",
            format!("{code} is not one of 1 (float), 10 (float16), 11 (double), 16 (bfloat16)"),
        )),
    }
}

/// Softmax of one row in place, computed at `precision`: in f64 for double, in f32 for
/// float, and for float16/bfloat16 in f32 with every intermediate (`x - max`, its `exp`, the
/// sum, the quotient) rounded to that type, as the reference's elementwise numpy arithmetic in
/// that type does (its sums accumulate in f32 and round once).
///
/// `exp(x - max) / Σ exp(x - max)`; a NaN anywhere makes the row NaN. A row whose maximum is
/// `-inf` (no finite logit, every key masked) becomes all zeros rather than `0/0`, as the
/// Attention spec requires. Relative error: a few ulps of the working type.
fn softmax_row<R: Real>(row: &mut [R], precision: DataType) {
    match precision {
        DataType::Double => softmax_in::<R, f64>(row, |x| x),
        DataType::Float16 => softmax_in::<R, f32>(row, |x| f16::from_f32(x).to_f32()),
        DataType::Bfloat16 => softmax_in::<R, f32>(row, |x| bf16::from_f32(x).to_f32()),
        _ => softmax_in::<R, f32>(row, |x| x),
    }
}

/// Softmax computed in `W`, with `round` applied to each intermediate result.
fn softmax_in<R: Real, W: num_traits::Float>(row: &mut [R], round: impl Fn(W) -> W) {
    let w = |x: R| round(W::from(x).unwrap_or_else(W::nan));
    let r = |x: W| R::from(x).unwrap_or_else(R::nan);
    let mut max = W::neg_infinity();
    for &x in row.iter() {
        let x = w(x);
        if x.is_nan() || max.is_nan() {
            max = W::nan();
        } else if x > max {
            max = x;
        }
    }
    if max == W::neg_infinity() {
        row.fill(R::zero());
        return;
    }
    let mut sum = W::zero();
    for x in row.iter_mut() {
        let e = round(round(w(*x) - max).exp());
        sum = sum + e;
        *x = r(e);
    }
    let sum = round(sum);
    for x in row.iter_mut() {
        *x = r(round(w(*x) / sum));
    }
}

/// `scores[l, s] = Σ_d q[l, d]·k[s, d]` for one head: `q` is `l x d`, `k` is `s x d`, both
/// row-major; returns the `l x s` row-major product.
fn qk_product<R: Real>(q: &[R], k: &[R], l: usize, s: usize, d: usize) -> Result<Vec<R>, OpError> {
    let mut scores = vec![R::zero(); l * s];
    gemm(
        R::one(),
        Lhs::Unpacked(MatRef::row_major(q, l, d)?),
        Rhs::Unpacked(MatRef::row_major(k, s, d)?.t()),
        R::zero(),
        MatMut::row_major(&mut scores, l, s)?,
        &Epilogue::none(),
    )?;
    Ok(scores)
}

/// `out[l, e] = Σ_s p[l, s]·v[s, e]` for one head: `p` is `l x s`, `v` is `s x e`.
fn pv_product<R: Real>(p: &[R], v: &[R], l: usize, s: usize, e: usize) -> Result<Vec<R>, OpError> {
    let mut out = vec![R::zero(); l * e];
    gemm(
        R::one(),
        Lhs::Unpacked(MatRef::row_major(p, l, s)?),
        Rhs::Unpacked(MatRef::row_major(v, s, e)?),
        R::zero(),
        MatMut::row_major(&mut out, l, e)?,
        &Epilogue::none(),
    )?;
    Ok(out)
}

/// Swaps the two middle axes of a `[a, b, c, d]` row-major array: `(a, b, c, d) -> (a, c, b, d)`.
/// Moves between the packed `(batch, seq, heads·size)` layout and the per-head
/// `(batch, heads, seq, size)` one, in either direction.
fn swap_middle<T: Copy>(x: &[T], a: usize, b: usize, c: usize, d: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for ia in 0..a {
        for ic in 0..c {
            for ib in 0..b {
                let start = ((ia * b + ib) * c + ic) * d;
                out.extend_from_slice(&x[start..start + d]);
            }
        }
    }
    out
}

/// Whether the node names output `index`.
fn output_named(node: &runnx_ir::Node, index: usize) -> bool {
    node.outputs.get(index).is_some_and(|n| !n.is_empty())
}

/// What a kernel returns for an optional output the node does not name (the runtime drops it).
fn unnamed_output(dtype: DataType) -> Value {
    Value::Tensor(Tensor::zeros(dtype, [0]))
}

/// `n / parts` when it divides evenly, else an error naming what was split.
fn split_even(n: usize, parts: usize, what: &str) -> Result<usize, OpError> {
    if parts == 0 || !n.is_multiple_of(parts) {
        return Err(OpError::invalid(format!(
            "{what}: {n} does not split evenly into {parts} heads"
        )));
    }
    Ok(n / parts)
}

/// A positive head-count attribute.
fn heads_attr(value: Option<i64>, name: &str) -> Result<Option<usize>, OpError> {
    match value {
        None => Ok(None),
        Some(v) if v > 0 => Ok(Some(v as usize)),
        Some(v) => Err(OpError::attribute(
            name,
            format!("must be positive, got {v}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_masks_empty_rows_and_normalises() {
        let mut row = [1.0f32, 2.0, 3.0];
        softmax_row(&mut row, DataType::Float);
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);

        let mut masked = [f32::NEG_INFINITY; 4];
        softmax_row(&mut masked, DataType::Float);
        assert_eq!(masked, [0.0; 4]);

        let mut wide = [0.5f32, -0.25];
        softmax_row(&mut wide, DataType::Double);
        let e = (-0.75f64).exp();
        assert!((f64::from(wide[0]) - 1.0 / (1.0 + e)).abs() < 1e-7);
    }

    #[test]
    fn swap_middle_round_trips() {
        let x: Vec<i32> = (0..2 * 3 * 4 * 5).collect();
        let y = swap_middle(&x, 2, 3, 4, 5);
        assert_eq!(y[5], x[4 * 5]);
        assert_eq!(swap_middle(&y, 2, 4, 3, 5), x);
    }
}
