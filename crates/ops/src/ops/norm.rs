//! Normalisation ops: BatchNormalization, LayerNormalization, RMSNormalization,
//! InstanceNormalization,
//! GroupNormalization, LpNormalization, MeanVarianceNormalization, LRN; and the float helpers
//! ([`FloatKind`], [`Real`]) that the float-only ops of this crate (conv, pool, norm, matmul)
//! share.
//!
//! Statistics are computed in f32 for float, float16 and bfloat16 inputs and in f64 for double,
//! two-pass (mean, then the mean of squared deviations), one block per task in parallel.

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;
use runnx_ir::{DataType, Element, Tensor, TensorData, Value};

use crate::kernels::gemm::GemmScalar;
use crate::kernels::vecmath::NormRow;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions(
        "",
        "BatchNormalization",
        &[1, 6, 7, 9, 14, 15],
        build_batch_norm,
    );
    reg.add("", "LayerNormalization", 17, build_layer_norm);
    reg.add(
        "com.microsoft",
        "SkipLayerNormalization",
        1,
        build_skip_layer_norm,
    );
    reg.add("", "RMSNormalization", 23, build_rms_norm);
    reg.add_versions(
        "",
        "InstanceNormalization",
        &[1, 6, 22],
        build_instance_norm,
    );
    reg.add_versions("", "GroupNormalization", &[18, 21], build_group_norm);
    reg.add_versions("", "LpNormalization", &[1, 22], build_lp_norm);
    reg.add_versions("", "MeanVarianceNormalization", &[9, 13], build_mvn);
    reg.add_versions("", "LRN", &[1, 13], build_lrn);
}

/// Below this many elements a normalisation runs on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Runs `$typed::<f32>` or `$typed::<f64>` depending on the compute type of `$x`.
macro_rules! by_float_kind {
    ($x:expr, $typed:ident ( $($arg:expr),* )) => {
        match FloatKind::of($x.dtype(), 0)? {
            FloatKind::F32 => $typed::<f32>($($arg),*),
            FloatKind::F64 => $typed::<f64>($($arg),*),
        }
    };
}

/// The number of outputs the node names (at least 1).
fn declared_outputs(info: &NodeInfo) -> usize {
    info.node.outputs.len().max(1)
}

/// Mean and `1/sqrt(variance + eps)` of `x` (population variance, two passes). Uncentred
/// (RMS normalisation), the mean is taken as zero: `1/sqrt(mean(x²) + eps)`.
fn moments<R: Real>(x: &[R], eps: R, centred: bool) -> (R, R) {
    let n = R::from_usize(x.len()).unwrap_or_else(R::nan);
    let mean = if centred { sum(x) / n } else { R::zero() };
    let mut squares = [R::zero(); 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(R::zero(), |s, &v| s + (v - mean) * (v - mean));
    for c in chunks {
        for l in 0..8 {
            squares[l] = squares[l] + (c[l] - mean) * (c[l] - mean);
        }
    }
    let var = squares.iter().fold(tail, |s, &v| s + v) / n;
    (mean, R::one() / (var + eps).sqrt())
}

/// The largest element, NaN ignored (-inf for none), over eight lanes so that it vectorises
/// (a single running maximum is one dependent compare per element).
pub(super) fn max_of<R: Real>(row: &[R]) -> R {
    let pick = |a: R, b: R| if b > a { b } else { a };
    let mut lanes = [R::neg_infinity(); 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(R::neg_infinity(), |m, &v| pick(m, v));
    for c in chunks {
        for l in 0..8 {
            lanes[l] = pick(lanes[l], c[l]);
        }
    }
    lanes.iter().fold(tail, |m, &v| pick(m, v))
}

/// The sum of `x` with eight independent accumulators, so that it vectorises (a single running
/// sum is a chain the compiler may not reorder).
pub(super) fn sum<R: Real>(x: &[R]) -> R {
    let mut acc = [R::zero(); 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(R::zero(), |s, &v| s + v);
    for c in chunks {
        for l in 0..8 {
            acc[l] = acc[l] + c[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// Standardises each `block`-long chunk of `x` (there are `blocks`; see [`moments`] for
/// `centred`), then calls `finish(block index, chunk)` while the chunk is in cache. Returns the
/// output and each block's (mean, 1/std).
fn normalize_blocks<R: Real>(
    x: &[R],
    blocks: usize,
    block: usize,
    eps: R,
    centred: bool,
    finish: impl Fn(usize, &mut [R]) + Sync + Send,
) -> (Vec<R>, Vec<(R, R)>) {
    let mut y = vec![R::zero(); x.len()];
    if block == 0 {
        return (y, vec![(R::nan(), R::nan()); blocks]);
    }
    let one = |(i, (xb, yb)): (usize, (&[R], &mut [R]))| {
        let (mean, inv_std) = moments(xb, eps, centred);
        yb.iter_mut()
            .zip(xb)
            .for_each(|(y, &x)| *y = (x - mean) * inv_std);
        finish(i, yb);
        (mean, inv_std)
    };
    let stats = if x.len() >= PARALLEL_ELEMENTS {
        x.par_chunks(block)
            .zip(y.par_chunks_mut(block))
            .enumerate()
            .map(one)
            .collect()
    } else {
        x.chunks(block)
            .zip(y.chunks_mut(block))
            .enumerate()
            .map(one)
            .collect()
    };
    (y, stats)
}

/// (Skip)LayerNormalization of `rows` rows of `hidden` values, row `i` described by `row(i)`:
/// the outputs, each row's (mean, inverse standard deviation), and with `keep_sum` the
/// normalised sums themselves (else empty).
fn layer_norm_rows<'a, R: Real>(
    rows: usize,
    hidden: usize,
    keep_sum: bool,
    row: impl Fn(usize) -> NormRow<'a, R> + Sync,
) -> (Vec<R>, Vec<(R, R)>, Vec<R>) {
    // Every row writes its whole row of `y` (and of `sum`): no need to zero them first.
    let mut y = crate::kernels::buffers::buffer::<R>(rows * hidden);
    let mut sum = crate::kernels::buffers::buffer::<R>(if keep_sum { rows * hidden } else { 0 });
    if hidden == 0 {
        return (y, vec![(R::nan(), R::nan()); rows], sum);
    }
    let one =
        |(i, (y, sum)): (usize, (&mut [R], Option<&mut [R]>))| R::layer_norm_row(&row(i), sum, y);
    let sum_rows: Vec<Option<&mut [R]>> = if keep_sum {
        sum.chunks_mut(hidden).map(Some).collect()
    } else {
        (0..rows).map(|_| None).collect()
    };
    let stats = if y.len() >= PARALLEL_ELEMENTS {
        y.par_chunks_mut(hidden)
            .zip(sum_rows)
            .enumerate()
            .map(one)
            .collect()
    } else {
        y.chunks_mut(hidden)
            .zip(sum_rows)
            .enumerate()
            .map(one)
            .collect()
    };
    (y, stats, sum)
}

/// `y = x·scale[c] + shift[c]` over planes of `inner` elements whose channel cycles through
/// `scale.len()` channels.
fn affine_planes<R: Real>(x: &[R], inner: usize, scale: &[R], shift: &[R]) -> Vec<R> {
    let mut y = vec![R::zero(); x.len()];
    if inner == 0 || scale.is_empty() {
        return y;
    }
    let one = |(i, (yp, xp)): (usize, (&mut [R], &[R]))| {
        let (a, b) = (scale[i % scale.len()], shift[i % shift.len()]);
        yp.iter_mut().zip(xp).for_each(|(y, &x)| *y = x * a + b);
    };
    if x.len() >= PARALLEL_ELEMENTS {
        y.par_chunks_mut(inner)
            .zip(x.par_chunks(inner))
            .enumerate()
            .for_each(one);
    } else {
        y.chunks_mut(inner)
            .zip(x.chunks(inner))
            .enumerate()
            .for_each(one);
    }
    y
}

/// Reads a per-channel parameter (input `index`) and checks its length.
fn channel_param<R: Real>(
    inputs: &Inputs,
    index: usize,
    len: usize,
    what: &str,
) -> Result<Vec<R>, OpError> {
    let v = R::read(inputs.tensor(index)?, index)?.into_owned();
    if v.len() != len {
        return Err(OpError::input(
            index,
            format!("expected {len} {what} values, got {}", v.len()),
        ));
    }
    Ok(v)
}

/// `[N, C, inner]` view of an input with at least two dims.
fn nc_inner(shape: &[usize], op: &str) -> Result<(usize, usize, usize), OpError> {
    if shape.len() < 2 {
        return Err(OpError::input(
            0,
            format!("{op} expects [N, C, ...], got shape {shape:?}"),
        ));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(OpError::attribute(
            "axis",
            format!("{axis} is out of range for rank {rank}"),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

// ---------------------------------------------------------------------------------------------
// BatchNormalization

/// ONNX `BatchNormalization`, opsets 1, 6, 7, 9, 14 and 15.
///
/// Inference mode: `Y = (X - mean) / sqrt(var + epsilon) · scale + B` per channel. Training
/// mode (opset 14+: `training_mode=1`; earlier: when the node asks for the running statistics
/// and, before opset 7, `is_test` is 0) normalises with the batch statistics and also outputs
/// `running = input · momentum + batch · (1 - momentum)` for mean and variance (population
/// variance), plus the batch mean and variance as `saved_mean`/`saved_var` before opset 14.
/// `spatial=0` (before opset 9) treats every (channel, position) pair as its own channel.
/// `consumed_inputs` (opset 1) is ignored.
struct BatchNorm {
    epsilon: f32,
    momentum: f32,
    training: bool,
    spatial: bool,
    outputs: usize,
    /// 3 from opset 14 (Y, running mean and variance), 5 before (plus the saved batch stats).
    max_outputs: usize,
}

fn build_batch_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let outputs = declared_outputs(info);
    let training = if info.opset >= 14 {
        info.attr_int("training_mode", 0)? != 0
    } else {
        outputs > 1 && (info.opset >= 7 || info.attr_int("is_test", 0)? == 0)
    };
    Ok(Box::new(BatchNorm {
        epsilon: info.attr_float("epsilon", 1e-5)?,
        momentum: info.attr_float("momentum", 0.9)?,
        training,
        spatial: info.opset >= 9 || info.attr_int("spatial", 1)? != 0,
        outputs,
        max_outputs: if info.opset >= 14 { 3 } else { 5 },
    }))
}

/// Per-channel batch mean and population variance of `[N, C, inner]` data.
fn channel_moments<R: Real>(x: &[R], n: usize, c: usize, inner: usize) -> Vec<(R, R)> {
    let count = R::from_usize(n * inner).unwrap_or_else(R::nan);
    let planes = |ch: usize| (0..n).map(move |b| &x[(b * c + ch) * inner..][..inner]);
    let one = |ch: usize| {
        let mean = planes(ch).map(|p| p.iter().copied().sum::<R>()).sum::<R>() / count;
        let var = planes(ch)
            .map(|p| p.iter().map(|&v| (v - mean) * (v - mean)).sum::<R>())
            .sum::<R>()
            / count;
        (mean, var)
    };
    if x.len() >= PARALLEL_ELEMENTS {
        (0..c).into_par_iter().map(one).collect()
    } else {
        (0..c).map(one).collect()
    }
}

fn batch_norm<R: Real>(op: &BatchNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let (n, c, inner) = nc_inner(xt.shape(), "BatchNormalization")?;
    let (channels, inner) = if op.spatial {
        (c, inner)
    } else {
        (c * inner, 1)
    };
    let x = R::read(xt, 0)?;
    let scale = channel_param::<R>(inputs, 1, channels, "scale")?;
    let bias = channel_param::<R>(inputs, 2, channels, "bias")?;
    let mean = channel_param::<R>(inputs, 3, channels, "mean")?;
    let var = channel_param::<R>(inputs, 4, channels, "variance")?;
    let eps = R::of(op.epsilon);
    let batch = op.training.then(|| channel_moments(&x, n, channels, inner));
    let (use_mean, use_var): (Vec<R>, Vec<R>) = match &batch {
        Some(m) => m.iter().copied().unzip(),
        None => (mean.clone(), var.clone()),
    };
    let a: Vec<R> = (0..channels)
        .map(|i| scale[i] / (use_var[i] + eps).sqrt())
        .collect();
    let b: Vec<R> = (0..channels)
        .map(|i| bias[i] - use_mean[i] * a[i])
        .collect();
    let y = affine_planes(&x, inner, &a, &b);
    let mut outputs = vec![R::to_tensor(y, xt.dtype(), xt.shape())?.into()];
    if batch.is_some() {
        let stats_type = inputs.tensor(3)?.dtype();
        let momentum = R::of(op.momentum);
        let running = |input: &[R], current: &[R]| -> Result<Value, OpError> {
            let v = input
                .iter()
                .zip(current)
                .map(|(&i, &c)| i * momentum + c * (R::one() - momentum))
                .collect();
            Ok(R::to_tensor(v, stats_type, &[channels])?.into())
        };
        outputs.push(running(&mean, &use_mean)?);
        outputs.push(running(&var, &use_var)?);
        outputs.push(R::to_tensor(use_mean, stats_type, &[channels])?.into());
        outputs.push(R::to_tensor(use_var, stats_type, &[channels])?.into());
        outputs.truncate(op.outputs.min(op.max_outputs));
    }
    Ok(outputs)
}

impl Kernel for BatchNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, batch_norm(self, &inputs))
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNormalization

/// ONNX `LayerNormalization`, opset 17: standardises over the dims from `axis` on, then
/// `Y = normalized · Scale + B` with Scale and B broadcast to those dims. The optional Mean and
/// InvStdDev outputs have X's leading dims (trailing ones set to 1) and the `stash_type` type.
struct LayerNorm {
    axis: i64,
    epsilon: f32,
    stash_type: DataType,
    outputs: usize,
}

fn build_layer_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let code = info.attr_int("stash_type", 1)?;
    let stash_type = i32::try_from(code)
        .ok()
        .and_then(DataType::from_onnx)
        .filter(|t| {
            matches!(
                t,
                DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16
            )
        })
        .ok_or_else(|| OpError::attribute("stash_type", format!("unsupported type code {code}")))?;
    Ok(Box::new(LayerNorm {
        axis: info.attr_int("axis", -1)?,
        epsilon: info.attr_float("epsilon", 1e-5)?,
        stash_type,
        outputs: declared_outputs(info),
    }))
}

/// Parameter `index` broadcast to the normalised block `block_shape` (X's dims from the
/// normalisation axis on): its shape, right-aligned against X's, may only vary along the block.
fn block_param<R: Real>(
    t: &Tensor,
    index: usize,
    x_rank: usize,
    block_shape: &[usize],
) -> Result<Vec<R>, OpError> {
    let values = R::read(t, index)?;
    let shape = t.shape();
    let bad = || {
        OpError::input(
            index,
            format!("shape {shape:?} does not broadcast to the normalised dims {block_shape:?}"),
        )
    };
    if shape.len() > x_rank {
        return Err(bad());
    }
    let lead = shape.len().saturating_sub(block_shape.len());
    if shape[..lead].iter().any(|&d| d != 1) {
        return Err(bad());
    }
    let shape = &shape[lead..];
    let pad = block_shape.len() - shape.len();
    let mut strides = vec![0; block_shape.len()];
    let mut stride = 1;
    for (i, &d) in shape.iter().enumerate().rev() {
        if d != 1 && d != block_shape[pad + i] {
            return Err(bad());
        }
        strides[pad + i] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let len: usize = block_shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let mut pos = vec![0; block_shape.len()];
    for _ in 0..len {
        out.push(values[pos.iter().zip(&strides).map(|(p, s)| p * s).sum::<usize>()]);
        for d in (0..pos.len()).rev() {
            pos[d] += 1;
            if pos[d] < block_shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(out)
}

fn layer_norm<R: Real>(op: &LayerNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let shape = xt.shape();
    let axis = normalize_axis(op.axis, shape.len())?;
    let (outer, block) = (
        shape[..axis].iter().product(),
        shape[axis..].iter().product(),
    );
    let scale = block_param::<R>(inputs.tensor(1)?, 1, shape.len(), &shape[axis..])?;
    let bias = match inputs.opt_tensor(2)? {
        Some(b) => Some(block_param::<R>(b, 2, shape.len(), &shape[axis..])?),
        None => None,
    };
    let x = R::read(xt, 0)?;
    let (y, stats, _) = layer_norm_rows(outer, block, false, |i| NormRow {
        input: &x[i * block..][..block],
        skip: None,
        bias: None,
        gamma: &scale,
        beta: bias.as_deref(),
        eps: R::of(op.epsilon),
    });
    let mut outputs = vec![R::to_tensor(y, xt.dtype(), shape)?.into()];
    if op.outputs > 1 {
        let mut stat_shape = shape[..axis].to_vec();
        stat_shape.resize(shape.len(), 1);
        let (mean, inv_std): (Vec<R>, Vec<R>) = stats.into_iter().unzip();
        outputs.push(R::to_tensor(mean, op.stash_type, &stat_shape)?.into());
        outputs.push(R::to_tensor(inv_std, op.stash_type, &stat_shape)?.into());
        outputs.truncate(op.outputs);
    }
    Ok(outputs)
}

impl Kernel for LayerNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, layer_norm(self, &inputs))
    }
}

/// onnxruntime's `com.microsoft.SkipLayerNormalization`: LayerNormalization over the last axis
/// of `input + skip (+ bias)`, the residual connection and the bias of the linear layer before
/// it added in the same pass. Inputs: input `(.., H)`, skip (input's shape, or its trailing
/// dims), gamma `(H)`, optional beta `(H)` and bias `(H)`. Outputs: the result, optionally
/// mean and inverse standard deviation (`(.., 1)`, float) and the sum itself.
struct SkipLayerNorm {
    epsilon: f32,
    outputs: usize,
}

fn build_skip_layer_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(SkipLayerNorm {
        epsilon: info.attr_float("epsilon", 1e-12)?,
        outputs: declared_outputs(info),
    }))
}

/// Input `index`, a vector of `len` values along the normalised axis.
fn hidden_vector<'a, R: Real>(
    t: &'a Tensor,
    index: usize,
    len: usize,
) -> Result<Cow<'a, [R]>, OpError> {
    if t.shape() != [len] {
        return Err(OpError::input(
            index,
            format!("shape {:?} is not the hidden size ({len})", t.shape()),
        ));
    }
    R::read(t, index)
}

fn skip_layer_norm<R: Real>(op: &SkipLayerNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let shape = xt.shape();
    let Some(&hidden) = shape.last() else {
        return Err(OpError::input(
            0,
            "a scalar has no hidden axis to normalise",
        ));
    };
    let skip_t = inputs.tensor(1)?;
    let skip_shape = skip_t.shape();
    if skip_shape.len() > shape.len()
        || skip_shape.is_empty()
        || skip_shape[..] != shape[shape.len() - skip_shape.len()..]
    {
        return Err(OpError::input(
            1,
            format!("skip shape {skip_shape:?} is not the input's {shape:?} or its trailing dims"),
        ));
    }
    let gamma = hidden_vector::<R>(inputs.tensor(2)?, 2, hidden)?;
    let beta = match inputs.opt_tensor(3)? {
        Some(t) => Some(hidden_vector::<R>(t, 3, hidden)?),
        None => None,
    };
    let bias = match inputs.opt_tensor(4)? {
        Some(t) => Some(hidden_vector::<R>(t, 4, hidden)?),
        None => None,
    };
    let x = R::read(xt, 0)?;
    let skip = R::read(skip_t, 1)?;
    let rows = if hidden == 0 { 0 } else { x.len() / hidden };
    // The skip repeats over the leading dims it lacks.
    let skip_rows = if hidden == 0 {
        1
    } else {
        (skip.len() / hidden).max(1)
    };
    let (y, stats, sum) = layer_norm_rows(rows, hidden, op.outputs > 3, |i| NormRow {
        input: &x[i * hidden..][..hidden],
        skip: Some(&skip[i % skip_rows * hidden..][..hidden]),
        bias: bias.as_deref(),
        gamma: &gamma,
        beta: beta.as_deref(),
        eps: R::of(op.epsilon),
    });
    let mut outputs: Vec<Value> = vec![R::to_tensor(y, xt.dtype(), shape)?.into()];
    if op.outputs > 1 {
        let mut stat_shape = shape.to_vec();
        *stat_shape.last_mut().expect("rank checked above") = 1;
        let (mean, inv_std): (Vec<R>, Vec<R>) = stats.into_iter().unzip();
        outputs.push(R::to_tensor(mean, DataType::Float, &stat_shape)?.into());
        outputs.push(R::to_tensor(inv_std, DataType::Float, &stat_shape)?.into());
        if op.outputs > 3 {
            outputs.push(R::to_tensor(sum, xt.dtype(), shape)?.into());
        }
        outputs.truncate(op.outputs);
    }
    Ok(outputs)
}

impl Kernel for SkipLayerNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, skip_layer_norm(self, &inputs))
    }
}

/// ONNX `RMSNormalization`, opset 23: `Y = X / sqrt(mean(X²) + epsilon) · scale` over the dims
/// from `axis` on, with `scale` broadcast to them. Computed in f32 (f64 for double), which
/// satisfies every `stash_type`.
struct RmsNorm {
    axis: i64,
    epsilon: f32,
}

fn build_rms_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(RmsNorm {
        axis: info.attr_int("axis", -1)?,
        epsilon: info.attr_float("epsilon", 1e-5)?,
    }))
}

fn rms_norm<R: Real>(op: &RmsNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let shape = xt.shape();
    let axis = normalize_axis(op.axis, shape.len())?;
    let (outer, block) = (
        shape[..axis].iter().product(),
        shape[axis..].iter().product(),
    );
    let scale = block_param::<R>(inputs.tensor(1)?, 1, shape.len(), &shape[axis..])?;
    let (y, _) = normalize_blocks(
        &R::read(xt, 0)?,
        outer,
        block,
        R::of(op.epsilon),
        false,
        |_, yb| yb.iter_mut().zip(&scale).for_each(|(y, &s)| *y = *y * s),
    );
    Ok(vec![R::to_tensor(y, xt.dtype(), shape)?.into()])
}

impl Kernel for RmsNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, rms_norm(self, &inputs))
    }
}

// ---------------------------------------------------------------------------------------------
// InstanceNormalization and GroupNormalization

/// ONNX `InstanceNormalization`, opsets 1, 6 and 22 (bfloat16): standardises each (instance,
/// channel) plane, then applies the per-channel scale and bias.
struct InstanceNorm {
    epsilon: f32,
}

fn build_instance_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(InstanceNorm {
        epsilon: info.attr_float("epsilon", 1e-5)?,
    }))
}

fn instance_norm<R: Real>(op: &InstanceNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let (n, c, inner) = nc_inner(xt.shape(), "InstanceNormalization")?;
    let scale = channel_param::<R>(inputs, 1, c, "scale")?;
    let bias = channel_param::<R>(inputs, 2, c, "bias")?;
    let (y, _) = normalize_blocks(
        &R::read(xt, 0)?,
        n * c,
        inner,
        R::of(op.epsilon),
        true,
        |i, yb| {
            let (s, b) = (scale[i % c], bias[i % c]);
            yb.iter_mut().for_each(|y| *y = *y * s + b);
        },
    );
    Ok(vec![R::to_tensor(y, xt.dtype(), xt.shape())?.into()])
}

impl Kernel for InstanceNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, instance_norm(self, &inputs))
    }
}

/// ONNX `GroupNormalization`, opsets 18 (scale and bias per group) and 21 (per channel,
/// `stash_type`): standardises each (instance, group of channels) block. Either parameter
/// layout is accepted in both versions, told apart by length. Statistics are computed in f32
/// (f64 for double), which satisfies every `stash_type`.
struct GroupNorm {
    epsilon: f32,
    groups: usize,
}

fn build_group_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let groups = info
        .attr_int_opt("num_groups")?
        .ok_or_else(|| OpError::attribute("num_groups", "is required"))?;
    Ok(Box::new(GroupNorm {
        epsilon: info.attr_float("epsilon", 1e-5)?,
        groups: usize::try_from(groups)
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| {
                OpError::attribute("num_groups", format!("must be positive, got {groups}"))
            })?,
    }))
}

/// A per-group or per-channel parameter as one value per channel.
fn per_channel<R: Real>(
    inputs: &Inputs,
    index: usize,
    channels: usize,
    groups: usize,
) -> Result<Vec<R>, OpError> {
    let v = R::read(inputs.tensor(index)?, index)?;
    if v.len() == channels {
        Ok(v.into_owned())
    } else if v.len() == groups {
        Ok((0..channels).map(|c| v[c / (channels / groups)]).collect())
    } else {
        Err(OpError::input(
            index,
            format!(
                "expected {channels} (per channel) or {groups} (per group) values, got {}",
                v.len()
            ),
        ))
    }
}

fn group_norm<R: Real>(op: &GroupNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let (n, c, inner) = nc_inner(xt.shape(), "GroupNormalization")?;
    if c % op.groups != 0 {
        return Err(OpError::invalid(format!(
            "{c} channels are not divisible into {} groups",
            op.groups
        )));
    }
    let per_group = c / op.groups;
    let scale = per_channel::<R>(inputs, 1, c, op.groups)?;
    let bias = per_channel::<R>(inputs, 2, c, op.groups)?;
    let (y, _) = normalize_blocks(
        &R::read(xt, 0)?,
        n * op.groups,
        per_group * inner,
        R::of(op.epsilon),
        true,
        |i, yb| {
            let first = (i % op.groups) * per_group;
            for (k, plane) in yb.chunks_mut(inner.max(1)).enumerate() {
                let (s, b) = (scale[first + k], bias[first + k]);
                plane.iter_mut().for_each(|y| *y = *y * s + b);
            }
        },
    );
    Ok(vec![R::to_tensor(y, xt.dtype(), xt.shape())?.into()])
}

impl Kernel for GroupNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, group_norm(self, &inputs))
    }
}

// ---------------------------------------------------------------------------------------------
// LpNormalization, MeanVarianceNormalization, LRN

/// ONNX `LpNormalization`, opsets 1 and 22 (bfloat16): `x / ||x||_p` along `axis` for p = 1
/// or 2; a zero norm gives zeros.
struct LpNorm {
    axis: i64,
    p: i64,
}

fn build_lp_norm(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let p = info.attr_int("p", 2)?;
    if p != 1 && p != 2 {
        return Err(OpError::attribute("p", format!("must be 1 or 2, got {p}")));
    }
    Ok(Box::new(LpNorm {
        axis: info.attr_int("axis", -1)?,
        p,
    }))
}

fn lp_norm<R: Real>(op: &LpNorm, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let shape = xt.shape();
    let axis = normalize_axis(op.axis, shape.len())?;
    let (len, inner) = (
        shape.get(axis).copied().unwrap_or(1),
        shape[axis + 1..].iter().product::<usize>(),
    );
    let x = R::read(xt, 0)?;
    let mut y = vec![R::zero(); x.len()];
    let block = len * inner;
    if block > 0 {
        let p2 = op.p == 2;
        let one = |(yb, xb): (&mut [R], &[R])| {
            let mut norm = vec![R::zero(); inner];
            for row in xb.chunks(inner) {
                norm.iter_mut()
                    .zip(row)
                    .for_each(|(n, &v)| *n = *n + if p2 { v * v } else { v.abs() });
            }
            if p2 {
                norm.iter_mut().for_each(|n| *n = n.sqrt());
            }
            for (yr, xr) in yb.chunks_mut(inner).zip(xb.chunks(inner)) {
                for ((y, &x), &n) in yr.iter_mut().zip(xr).zip(&norm) {
                    *y = if n == R::zero() { R::zero() } else { x / n };
                }
            }
        };
        if x.len() >= PARALLEL_ELEMENTS {
            y.par_chunks_mut(block)
                .zip(x.par_chunks(block))
                .for_each(one);
        } else {
            y.chunks_mut(block).zip(x.chunks(block)).for_each(one);
        }
    }
    Ok(vec![R::to_tensor(y, xt.dtype(), shape)?.into()])
}

impl Kernel for LpNorm {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, lp_norm(self, &inputs))
    }
}

/// ONNX `MeanVarianceNormalization`, opsets 9 and 13 (bfloat16):
/// `(X - E[X]) / (sqrt(E[(X - E[X])²]) + 1e-9)` with the expectations over `axes` (default
/// `[0, 2, 3]`), as in the op's function body.
struct Mvn {
    axes: Vec<i64>,
}

fn build_mvn(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Mvn {
        axes: info.attr_ints_opt("axes")?.unwrap_or_else(|| vec![0, 2, 3]),
    }))
}

/// For every element of a tensor of `shape` (row-major), the index of its group when the
/// `reduced` axes are collapsed.
fn group_indices(shape: &[usize], reduced: &[bool]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut stride = 1;
    for d in (0..shape.len()).rev() {
        if !reduced[d] {
            strides[d] = stride;
            stride *= shape[d];
        }
    }
    let len: usize = shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let (mut pos, mut index) = (vec![0; shape.len()], 0);
    for _ in 0..len {
        out.push(index);
        for d in (0..shape.len()).rev() {
            pos[d] += 1;
            index += strides[d];
            if pos[d] < shape[d] {
                break;
            }
            index -= strides[d] * shape[d];
            pos[d] = 0;
        }
    }
    out
}

fn mvn<R: Real>(op: &Mvn, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let shape = xt.shape();
    let mut reduced = vec![false; shape.len()];
    for &a in &op.axes {
        reduced[normalize_axis(a, shape.len())?] = true;
    }
    let groups: usize = (0..shape.len())
        .filter(|&d| !reduced[d])
        .map(|d| shape[d])
        .product();
    let count = R::from_usize(
        shape
            .iter()
            .zip(&reduced)
            .filter(|(_, &r)| r)
            .map(|(d, _)| d)
            .product(),
    )
    .unwrap_or_else(R::nan);
    let x = R::read(xt, 0)?;
    let group = group_indices(shape, &reduced);
    let mut mean = vec![R::zero(); groups];
    x.iter()
        .zip(&group)
        .for_each(|(&v, &g)| mean[g] = mean[g] + v);
    mean.iter_mut().for_each(|m| *m = *m / count);
    let mut var = vec![R::zero(); groups];
    x.iter()
        .zip(&group)
        .for_each(|(&v, &g)| var[g] = var[g] + (v - mean[g]) * (v - mean[g]));
    let denom: Vec<R> = var
        .iter()
        .map(|&v| (v / count).sqrt() + R::of(1e-9))
        .collect();
    let y = x
        .iter()
        .zip(&group)
        .map(|(&v, &g)| (v - mean[g]) / denom[g])
        .collect();
    Ok(vec![R::to_tensor(y, xt.dtype(), shape)?.into()])
}

impl Kernel for Mvn {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, mvn(self, &inputs))
    }
}

/// ONNX `LRN`, opsets 1 and 13 (bfloat16): across-channel local response normalisation,
/// `y = x / (bias + alpha/size · Σ x²)^beta` over channels
/// `[c - floor((size-1)/2), c + ceil((size-1)/2)]`.
struct Lrn {
    alpha: f32,
    beta: f32,
    bias: f32,
    size: usize,
}

fn build_lrn(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let size = info
        .attr_int_opt("size")?
        .ok_or_else(|| OpError::attribute("size", "is required"))?;
    Ok(Box::new(Lrn {
        alpha: info.attr_float("alpha", 1e-4)?,
        beta: info.attr_float("beta", 0.75)?,
        bias: info.attr_float("bias", 1.0)?,
        size: usize::try_from(size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| OpError::attribute("size", format!("must be positive, got {size}")))?,
    }))
}

fn lrn<R: Real>(op: &Lrn, inputs: &Inputs) -> Result<Vec<Value>, OpError> {
    let xt = inputs.tensor(0)?;
    let (_, c, inner) = nc_inner(xt.shape(), "LRN")?;
    let x = R::read(xt, 0)?;
    let mut y = vec![R::zero(); x.len()];
    if inner > 0 {
        let (below, above) = ((op.size - 1) / 2, op.size / 2);
        let scale = R::of(op.alpha) / R::from_usize(op.size).unwrap_or_else(R::nan);
        let (bias, neg_beta) = (R::of(op.bias), -R::of(op.beta));
        let one = |(plane, yp): (usize, &mut [R])| {
            let (n, ch) = (plane / c, plane % c);
            let mut sum = vec![R::zero(); inner];
            for i in ch.saturating_sub(below)..(ch + above + 1).min(c) {
                let xp = &x[(n * c + i) * inner..][..inner];
                sum.iter_mut().zip(xp).for_each(|(s, &v)| *s = *s + v * v);
            }
            let xp = &x[plane * inner..][..inner];
            for ((y, &v), &s) in yp.iter_mut().zip(xp).zip(&sum) {
                *y = v * (bias + scale * s).powf(neg_beta);
            }
        };
        if x.len() >= PARALLEL_ELEMENTS {
            y.par_chunks_mut(inner).enumerate().for_each(one);
        } else {
            y.chunks_mut(inner).enumerate().for_each(one);
        }
    }
    Ok(vec![R::to_tensor(y, xt.dtype(), xt.shape())?.into()])
}

impl Kernel for Lrn {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        by_float_kind!(inputs.tensor(0)?, lrn(self, &inputs))
    }
}

// ---------------------------------------------------------------------------------------------
// Float helpers shared by the float-only ops (conv, pool, matmul, norm).

/// The type a float op computes in: f64 for double, f32 for float, float16 and bfloat16 (which
/// are converted on input and rounded back on output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FloatKind {
    F32,
    F64,
}

impl FloatKind {
    /// The compute type for input `index` of type `dtype`; an error for non-float types.
    pub(super) fn of(dtype: DataType, index: usize) -> Result<FloatKind, OpError> {
        match dtype {
            DataType::Double => Ok(FloatKind::F64),
            DataType::Float | DataType::Float16 | DataType::Bfloat16 => Ok(FloatKind::F32),
            other => Err(OpError::input(
                index,
                format!("expected float, double, float16 or bfloat16, got {other}"),
            )),
        }
    }
}

/// f32 or f64, with conversions from and to the float tensor types.
pub(super) trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + GemmScalar
    + Element
    + std::iter::Sum
    + std::fmt::Debug
{
    /// Input `index`'s elements as `Self`, borrowed when no conversion is needed.
    fn read(t: &Tensor, index: usize) -> Result<Cow<'_, [Self]>, OpError>;
    /// Values computed in `Self` as a tensor of `dtype` (rounding to float16/bfloat16 if asked).
    fn to_data(values: Vec<Self>, dtype: DataType) -> Result<TensorData, OpError>;
    /// An f32 constant (attribute value) in this type, exactly.
    fn of(v: f32) -> Self;
    /// `e^x` of every element (vectorised for f32).
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
    /// Softmax of one row in place, the maximum subtracted first so that `exp` stays finite
    /// (vectorised as one fused kernel for f32).
    fn softmax_in_place(row: &mut [Self]) {
        let max = max_of(row);
        row.iter_mut().for_each(|v| *v = *v - max);
        Self::exp_in_place(row);
        let scale = Self::one() / sum(row);
        row.iter_mut().for_each(|v| *v = *v * scale);
    }

    /// One row of (Skip)LayerNormalization into `y` (and the sum into `sum`), returning the mean
    /// and inverse standard deviation (one vectorised kernel for f32).
    fn layer_norm_row(
        row: &NormRow<'_, Self>,
        sum: Option<&mut [Self]>,
        y: &mut [Self],
    ) -> (Self, Self) {
        y.copy_from_slice(row.input);
        for addend in [row.skip, row.bias].into_iter().flatten() {
            y.iter_mut().zip(addend).for_each(|(y, &a)| *y = *y + a);
        }
        if let Some(sum) = sum {
            sum.copy_from_slice(y);
        }
        let (mean, inv_std) = moments(y, row.eps, true);
        match row.beta {
            Some(beta) => y
                .iter_mut()
                .zip(row.gamma)
                .zip(beta)
                .for_each(|((y, &g), &b)| *y = (*y - mean) * inv_std * g + b),
            None => y
                .iter_mut()
                .zip(row.gamma)
                .for_each(|(y, &g)| *y = (*y - mean) * inv_std * g),
        }
        (mean, inv_std)
    }

    fn to_tensor(values: Vec<Self>, dtype: DataType, shape: &[usize]) -> Result<Tensor, OpError> {
        Ok(Tensor::new(shape, Self::to_data(values, dtype)?)?)
    }
}

fn not_float(index: usize, dtype: DataType) -> OpError {
    OpError::input(index, format!("expected a float tensor, got {dtype}"))
}

impl Real for f32 {
    fn exp_in_place(xs: &mut [f32]) {
        crate::kernels::vecmath::exp_in_place(xs);
    }
    fn softmax_in_place(row: &mut [f32]) {
        crate::kernels::vecmath::softmax_in_place(row);
    }
    fn layer_norm_row(
        row: &NormRow<'_, f32>,
        sum: Option<&mut [f32]>,
        y: &mut [f32],
    ) -> (f32, f32) {
        crate::kernels::vecmath::layer_norm_row(row, sum, y)
    }
    fn read(t: &Tensor, index: usize) -> Result<Cow<'_, [f32]>, OpError> {
        Ok(match t.data() {
            TensorData::Float(v) => Cow::Borrowed(v),
            TensorData::Float16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::Bfloat16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::Double(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            _ => return Err(not_float(index, t.dtype())),
        })
    }

    fn to_data(values: Vec<f32>, dtype: DataType) -> Result<TensorData, OpError> {
        Ok(match dtype {
            DataType::Float => TensorData::Float(values),
            DataType::Float16 => {
                TensorData::Float16(values.into_iter().map(f16::from_f32).collect())
            }
            DataType::Bfloat16 => {
                TensorData::Bfloat16(values.into_iter().map(bf16::from_f32).collect())
            }
            DataType::Double => TensorData::Double(values.into_iter().map(f64::from).collect()),
            other => {
                return Err(OpError::unsupported(format!(
                    "cannot produce {other} from float"
                )))
            }
        })
    }

    fn of(v: f32) -> f32 {
        v
    }
}

impl Real for f64 {
    fn read(t: &Tensor, index: usize) -> Result<Cow<'_, [f64]>, OpError> {
        Ok(match t.data() {
            TensorData::Double(v) => Cow::Borrowed(v),
            TensorData::Float(v) => Cow::Owned(v.iter().map(|&x| f64::from(x)).collect()),
            TensorData::Float16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            TensorData::Bfloat16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            _ => return Err(not_float(index, t.dtype())),
        })
    }

    fn to_data(values: Vec<f64>, dtype: DataType) -> Result<TensorData, OpError> {
        Ok(match dtype {
            DataType::Double => TensorData::Double(values),
            DataType::Float => TensorData::Float(values.into_iter().map(|x| x as f32).collect()),
            DataType::Float16 => {
                TensorData::Float16(values.into_iter().map(f16::from_f64).collect())
            }
            DataType::Bfloat16 => {
                TensorData::Bfloat16(values.into_iter().map(bf16::from_f64).collect())
            }
            other => {
                return Err(OpError::unsupported(format!(
                    "cannot produce {other} from double"
                )))
            }
        })
    }

    fn of(v: f32) -> f64 {
        f64::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(tensors: Vec<Tensor>) -> Inputs {
        Inputs::new(
            tensors
                .into_iter()
                .map(|t| Some(Value::Tensor(t)))
                .collect(),
        )
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_tensor().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn batch_norm_inference_and_training() {
        let x = Tensor::from_vec([2, 1, 2], vec![1f32, 3.0, 5.0, 7.0]).unwrap();
        let p = |v: f32| Tensor::from_vec([1], vec![v]).unwrap();
        let ins = || inputs(vec![x.clone(), p(2.0), p(1.0), p(4.0), p(4.0)]);
        let mut op = BatchNorm {
            epsilon: 0.0,
            momentum: 0.5,
            training: false,
            spatial: true,
            outputs: 1,
            max_outputs: 3,
        };
        // (x - 4) / 2 * 2 + 1
        let out = batch_norm::<f32>(&op, &ins()).unwrap();
        assert_eq!(floats(&out[0]), vec![-2.0, 0.0, 2.0, 4.0]);
        op.training = true;
        op.outputs = 3;
        // Batch mean 4, variance 5.
        let out = batch_norm::<f32>(&op, &ins()).unwrap();
        assert_eq!(out.len(), 3);
        let s = 2.0 / 5f32.sqrt();
        assert!(close(
            &floats(&out[0]),
            &[1.0 - 3.0 * s, 1.0 - s, 1.0 + s, 1.0 + 3.0 * s]
        ));
        assert_eq!(floats(&out[1]), vec![4.0]);
        assert_eq!(floats(&out[2]), vec![4.5]);
    }

    #[test]
    fn layer_norm_with_stats() {
        let x = Tensor::from_vec([2, 2], vec![1f32, 3.0, 2.0, 2.0]).unwrap();
        let scale = Tensor::from_vec([2], vec![1f32, 2.0]).unwrap();
        let op = LayerNorm {
            axis: -1,
            epsilon: 0.0,
            stash_type: DataType::Float,
            outputs: 3,
        };
        let out = layer_norm::<f32>(&op, &inputs(vec![x, scale])).unwrap();
        // Row 0: mean 2, std 1 -> [-1, 1] * [1, 2] (row 1 has zero variance and no epsilon).
        assert_eq!(floats(&out[0])[..2], [-1.0, 2.0]);
        assert_eq!(floats(&out[1]), vec![2.0, 2.0]);
        assert_eq!(out[1].as_tensor().unwrap().shape(), &[2, 1]);
        assert_eq!(floats(&out[2])[0], 1.0);
    }

    /// LayerNormalization of one row in f64, straight from the definition.
    fn reference_row(row: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        row.iter()
            .zip(gamma.iter().zip(beta))
            .map(|(v, (g, b))| (v - mean) / (var + eps).sqrt() * g + b)
            .collect()
    }

    #[test]
    fn skip_layer_norm_normalises_the_sum() {
        // (2, 3, 4) input, skip given whole and as its trailing (3, 4) dims, with and without
        // bias and beta.
        let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.5 - 2.0).collect();
        let skip: Vec<f32> = (0..24).map(|i| ((i * 5) % 13) as f32 * 0.25).collect();
        let gamma = vec![1.0f32, 2.0, 0.5, -1.0];
        let beta = vec![0.1f32, 0.0, -0.2, 0.3];
        let bias = vec![0.5f32, -0.5, 1.0, 0.0];
        let eps = 1e-5f32;
        let vector = |v: &[f32]| Tensor::from_vec([4], v.to_vec()).unwrap();
        for skip_rows in [6, 3] {
            for with_bias in [false, true] {
                let skip_shape: Vec<usize> = if skip_rows == 6 {
                    vec![2, 3, 4]
                } else {
                    vec![3, 4]
                };
                let mut ins = vec![
                    Tensor::from_vec([2, 3, 4], x.clone()).unwrap(),
                    Tensor::from_vec(skip_shape, skip[..skip_rows * 4].to_vec()).unwrap(),
                    vector(&gamma),
                ];
                if with_bias {
                    ins.push(vector(&beta));
                    ins.push(vector(&bias));
                }
                let op = SkipLayerNorm {
                    epsilon: eps,
                    outputs: 4,
                };
                let out = skip_layer_norm::<f32>(&op, &inputs(ins)).unwrap();
                let zeros = [0.0; 4];
                let (b, bi) = if with_bias {
                    (&beta[..], &bias[..])
                } else {
                    (&zeros[..], &zeros[..])
                };
                for r in 0..6 {
                    let sum: Vec<f64> = (0..4)
                        .map(|c| {
                            f64::from(x[r * 4 + c])
                                + f64::from(skip[(r % skip_rows) * 4 + c])
                                + f64::from(bi[c])
                        })
                        .collect();
                    let g64: Vec<f64> = gamma.iter().map(|&v| f64::from(v)).collect();
                    let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
                    let want = reference_row(&sum, &g64, &b64, f64::from(eps));
                    let got = &floats(&out[0])[r * 4..r * 4 + 4];
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (f64::from(*g) - w).abs() < 1e-5,
                            "row {r}: {got:?} vs {want:?}"
                        );
                    }
                    let sums = &floats(&out[3])[r * 4..r * 4 + 4];
                    for (g, w) in sums.iter().zip(&sum) {
                        assert!((f64::from(*g) - w).abs() < 1e-6);
                    }
                }
                assert_eq!(out[1].as_tensor().unwrap().shape(), &[2, 3, 1]);
                assert_eq!(out[2].as_tensor().unwrap().shape(), &[2, 3, 1]);
            }
        }
    }

    #[test]
    fn skip_layer_norm_wide_rows_in_f32_and_f64() {
        // Rows of whole vectors plus a remainder, so the f32 kernel's vector loops and tails
        // both run; f64 takes the generic path.
        for hidden in [16usize, 37, 128] {
            let rows = 5;
            let x: Vec<f64> = (0..rows * hidden)
                .map(|i| ((i * 37) % 23) as f64 * 0.25 - 3.0)
                .collect();
            let skip: Vec<f64> = (0..rows * hidden)
                .map(|i| ((i * 11) % 7) as f64 * 0.5)
                .collect();
            let gamma: Vec<f64> = (0..hidden).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect();
            let beta: Vec<f64> = (0..hidden).map(|i| (i % 3) as f64 * 0.1 - 0.1).collect();
            let bias: Vec<f64> = (0..hidden).map(|i| (i % 4) as f64 * 0.2).collect();
            let eps = 1e-5;
            let want: Vec<f64> = (0..rows)
                .flat_map(|r| {
                    let sum: Vec<f64> = (0..hidden)
                        .map(|c| x[r * hidden + c] + skip[r * hidden + c] + bias[c])
                        .collect();
                    reference_row(&sum, &gamma, &beta, eps)
                })
                .collect();
            let op = SkipLayerNorm {
                epsilon: eps as f32,
                outputs: 1,
            };
            let shape = [rows, hidden];
            let f32s = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let ins = inputs(vec![
                Tensor::from_vec(shape, f32s(&x)).unwrap(),
                Tensor::from_vec(shape, f32s(&skip)).unwrap(),
                Tensor::from_vec([hidden], f32s(&gamma)).unwrap(),
                Tensor::from_vec([hidden], f32s(&beta)).unwrap(),
                Tensor::from_vec([hidden], f32s(&bias)).unwrap(),
            ]);
            let got = floats(&skip_layer_norm::<f32>(&op, &ins).unwrap()[0]);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-5,
                    "f32, hidden {hidden}, at {i}: {g} vs {w}"
                );
            }
            let ins = inputs(vec![
                Tensor::from_vec(shape, x.clone()).unwrap(),
                Tensor::from_vec(shape, skip.clone()).unwrap(),
                Tensor::from_vec([hidden], gamma.clone()).unwrap(),
                Tensor::from_vec([hidden], beta.clone()).unwrap(),
                Tensor::from_vec([hidden], bias.clone()).unwrap(),
            ]);
            let out = skip_layer_norm::<f64>(&op, &ins).unwrap();
            let got = out[0]
                .as_tensor()
                .unwrap()
                .as_slice::<f64>()
                .unwrap()
                .to_vec();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-9,
                    "f64, hidden {hidden}, at {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn skip_layer_norm_rejects_a_skip_that_does_not_match() {
        let op = SkipLayerNorm {
            epsilon: 1e-5,
            outputs: 1,
        };
        let x = Tensor::from_vec([2, 4], vec![0f32; 8]).unwrap();
        let gamma = Tensor::from_vec([4], vec![1f32; 4]).unwrap();
        let skip = Tensor::from_vec([2, 1], vec![0f32; 2]).unwrap();
        let err = skip_layer_norm::<f32>(&op, &inputs(vec![x.clone(), skip, gamma.clone()]));
        assert!(err.unwrap_err().to_string().contains("skip shape"));
        let short_gamma = Tensor::from_vec([2], vec![1f32; 2]).unwrap();
        let err = skip_layer_norm::<f32>(&op, &inputs(vec![x.clone(), x, short_gamma]));
        assert!(err.unwrap_err().to_string().contains("hidden size"));
    }

    #[test]
    fn rms_norm_scales_by_root_mean_square() {
        let x = Tensor::from_vec([1, 2], vec![3f32, 4.0]).unwrap();
        let scale = Tensor::from_vec([2], vec![1f32, 2.0]).unwrap();
        let op = RmsNorm {
            axis: -1,
            epsilon: 0.0,
        };
        let out = rms_norm::<f32>(&op, &inputs(vec![x, scale])).unwrap();
        let rms = 12.5f32.sqrt();
        assert!(close(&floats(&out[0]), &[3.0 / rms, 8.0 / rms]));
    }

    #[test]
    fn group_norm_per_group_and_per_channel() {
        // One instance, 4 channels of 1 element, 2 groups.
        let x = Tensor::from_vec([1, 4, 1], vec![1f32, 3.0, 10.0, 10.0]).unwrap();
        let op = GroupNorm {
            epsilon: 0.0,
            groups: 2,
        };
        let per_group = inputs(vec![
            x.clone(),
            Tensor::from_vec([2], vec![2f32, 1.0]).unwrap(),
            Tensor::from_vec([2], vec![0f32, 5.0]).unwrap(),
        ]);
        let out = group_norm::<f32>(&op, &per_group).unwrap();
        assert_eq!(floats(&out[0])[..2], [-2.0, 2.0]);
        let per_channel = inputs(vec![
            x,
            Tensor::from_vec([4], vec![1f32, 3.0, 1.0, 1.0]).unwrap(),
            Tensor::from_vec([4], vec![0f32; 4]).unwrap(),
        ]);
        let out = group_norm::<f32>(&op, &per_channel).unwrap();
        assert_eq!(floats(&out[0])[..2], [-1.0, 3.0]);
    }

    #[test]
    fn lp_norm_lrn_and_mvn() {
        let x = Tensor::from_vec([2, 2], vec![3f32, 4.0, 0.0, 0.0]).unwrap();
        let out = lp_norm::<f32>(&LpNorm { axis: 1, p: 2 }, &inputs(vec![x.clone()])).unwrap();
        assert_eq!(floats(&out[0]), vec![0.6, 0.8, 0.0, 0.0]);
        let out = lp_norm::<f32>(&LpNorm { axis: 0, p: 1 }, &inputs(vec![x])).unwrap();
        assert_eq!(floats(&out[0]), vec![1.0, 1.0, 0.0, 0.0]);

        // LRN with size 2 over 2 channels: channel 0 sums channels 0..=1, channel 1 only itself.
        let x = Tensor::from_vec([1, 2, 1], vec![1f32, 2.0]).unwrap();
        let op = Lrn {
            alpha: 2.0,
            beta: 1.0,
            bias: 1.0,
            size: 2,
        };
        let out = lrn::<f32>(&op, &inputs(vec![x])).unwrap();
        assert!(close(&floats(&out[0]), &[1.0 / 6.0, 2.0 / 5.0]));

        let x = Tensor::from_vec([1, 2, 1, 2], vec![1f32, 3.0, 5.0, 5.0]).unwrap();
        let out = mvn::<f32>(
            &Mvn {
                axes: vec![0, 2, 3],
            },
            &inputs(vec![x]),
        )
        .unwrap();
        assert!(close(&floats(&out[0]), &[-1.0, 1.0, 0.0, 0.0]));
    }

    #[test]
    fn float16_round_trip() {
        let x = Tensor::from_vec([1, 1, 2], vec![f16::from_f32(1.0), f16::from_f32(3.0)]).unwrap();
        let ins = inputs(vec![
            x,
            Tensor::from_vec([1], vec![f16::from_f32(1.0)]).unwrap(),
            Tensor::from_vec([1], vec![f16::from_f32(0.0)]).unwrap(),
        ]);
        let out = InstanceNorm { epsilon: 0.0 }.run(ins).unwrap();
        let y = out[0].as_tensor().unwrap();
        assert_eq!(y.dtype(), DataType::Float16);
        assert_eq!(
            y.as_slice::<f16>().unwrap(),
            &[f16::from_f32(-1.0), f16::from_f32(1.0)]
        );
    }
}
