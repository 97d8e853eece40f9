//! Convolution, pooling, image ops (Resize, GridSample, RoiAlign ...), recurrent nets,
//! attention and signal processing.

use runnx_ir::{DataType, Dim};

use super::{same_as_input, Rule};
use crate::bail;
use crate::context::{NodeContext, RuleResult};
use crate::dims::{self, sliding_output, unify};
use crate::value::SymInt;

pub fn rule(op: &str) -> Option<Rule> {
    Some(match op {
        "Conv" | "DeformConv" => conv,
        "ConvInteger" => conv_integer,
        "QLinearConv" => qlinear_conv,
        "ConvTranspose" => conv_transpose,
        "MaxPool" | "AveragePool" | "LpPool" => pool,
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => global_pool,
        "MaxUnpool" => max_unpool,
        "MaxRoiPool" => max_roi_pool,
        "RoiAlign" => roi_align,
        "Resize" => resize,
        "Upsample" => upsample,
        "GridSample" => grid_sample,
        "AffineGrid" => affine_grid,
        "Col2Im" => col2im,
        "NonMaxSuppression" => non_max_suppression,
        "ImageDecoder" => image_decoder,
        "RNN" | "GRU" | "LSTM" => recurrent,
        "Attention" => attention,
        "RotaryEmbedding" => rotary_embedding,
        "LinearAttention" => linear_attention,
        "CausalConvWithState" => causal_conv_with_state,
        "SwiGLU" => swiglu,
        "DFT" => dft,
        "STFT" => stft,
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => window,
        "MelWeightMatrix" => mel_weight_matrix,
        _ => return None,
    })
}

/// com.microsoft ops (those runnx's optimizer writes: FusedConv, Gelu, BiasGelu,
/// SkipLayerNormalization).
pub fn rule_microsoft(op: &str) -> Option<Rule> {
    match op {
        "FusedConv" => Some(conv),
        "Gelu" | "BiasGelu" => Some(|ctx| super::same_as_input(ctx, 0, 0)),
        "SkipLayerNormalization" => Some(skip_layer_normalization),
        _ => None,
    }
}

/// The input's type; mean and inverse standard deviation (float) with the last dim 1; the sum
/// `input + skip + bias` with the input's type.
fn skip_layer_normalization(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.input_tensor(0)?;
    super::same_as_input(ctx, 0, 0)?;
    let stats_shape = ctx.input_shape(0).ok().map(|s| {
        let mut s = s.to_vec();
        if let Some(last) = s.last_mut() {
            *last = Dim::Fixed(1);
        }
        s
    });
    ctx.set_output_tensor(1, DataType::Float, stats_shape.clone());
    ctx.set_output_tensor(2, DataType::Float, stats_shape);
    super::same_as_input(ctx, 0, 3)
}

/// ai.onnx.preview ops.
pub fn rule_preview(op: &str) -> Option<Rule> {
    match op {
        "FlexAttention" => Some(flex_attention),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Sliding windows (convolution and pooling)

/// Window attributes over `n` spatial axes.
struct Window {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    /// Begins then ends, `2n` values.
    pads: Vec<i64>,
    auto_pad: String,
}

fn per_axis(ctx: &NodeContext<'_>, name: &str, n: usize, default: i64) -> RuleResult<Vec<i64>> {
    match ctx.attr_ints(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(v) => bail!(
            "attribute '{name}' has {} values for {n} spatial axes",
            v.len()
        ),
    }
}

fn window_attrs(ctx: &NodeContext<'_>, kernel: Vec<i64>) -> RuleResult<Window> {
    let n = kernel.len();
    if let Some(k) = kernel.iter().find(|&&k| k <= 0) {
        bail!("kernel size {k} must be positive");
    }
    let strides = per_axis(ctx, "strides", n, 1)?;
    let dilations = per_axis(ctx, "dilations", n, 1)?;
    if strides.iter().chain(&dilations).any(|&s| s <= 0) {
        bail!("strides {strides:?} and dilations {dilations:?} must be positive");
    }
    let auto_pad = ctx
        .attr_string("auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let pads = per_axis(ctx, "pads", 2 * n, 0)?;
    if pads.iter().any(|&p| p < 0) {
        bail!("pads {pads:?} must not be negative");
    }
    Ok(Window {
        kernel,
        strides,
        dilations,
        pads,
        auto_pad,
    })
}

impl Window {
    /// Output sizes of a convolution or pooling over `input` (the spatial dims).
    fn output(&self, input: &[Dim], ceil_mode: bool) -> RuleResult<Vec<Dim>> {
        let n = self.kernel.len();
        let mut out = Vec::with_capacity(n);
        for (i, d) in input.iter().enumerate() {
            let stride = self.strides[i];
            out.push(match self.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => match d {
                    Dim::Fixed(x) => {
                        Dim::Fixed((*x as i64 + stride - 1) as usize / stride as usize)
                    }
                    _ if stride == 1 => d.clone(),
                    _ => Dim::Unknown,
                },
                "VALID" => sliding_output(
                    d,
                    0,
                    0,
                    self.kernel[i],
                    stride,
                    self.dilations[i],
                    ceil_mode,
                )?,
                "NOTSET" => sliding_output(
                    d,
                    self.pads[i],
                    self.pads[i + n],
                    self.kernel[i],
                    stride,
                    self.dilations[i],
                    ceil_mode,
                )?,
                other => bail!("unknown auto_pad '{other}'"),
            });
        }
        Ok(out)
    }
}

/// The input's shape, checked to be `[N, C, spatial...]`.
fn batch_channels_spatial(ctx: &NodeContext<'_>, i: usize) -> RuleResult<Vec<Dim>> {
    let s = ctx.input_shape(i)?.to_vec();
    if s.len() < 2 {
        bail!(
            "input {i} must have rank 2 or more ([N, C, ...]), got {}",
            dims::format_shape(&s)
        );
    }
    Ok(s)
}

/// Kernel sizes from the `kernel_shape` attribute, else from the weights' shape `[M, C/g, k...]`.
fn kernel_of(
    ctx: &NodeContext<'_>,
    weights: Option<&[Dim]>,
    n: usize,
) -> RuleResult<Option<Vec<i64>>> {
    if let Some(k) = ctx.attr_ints("kernel_shape")? {
        if k.len() != n {
            bail!("kernel_shape {k:?} does not match {n} spatial axes");
        }
        return Ok(Some(k));
    }
    Ok(weights
        .and_then(|w| dims::fixed(&w[2..]))
        .map(|k| k.into_iter().map(|x| x as i64).collect()))
}

/// Y = [N, M, out...] with M = W[0] and the windowed spatial sizes.
fn conv_shape(ctx: &mut NodeContext<'_>, x: usize, w: usize, dtype: DataType) -> RuleResult {
    ctx.set_output_tensor(0, dtype, None);
    let xs = batch_channels_spatial(ctx, x)?;
    let n = xs.len() - 2;
    let weights = ctx.input_shape(w).ok().map(<[Dim]>::to_vec);
    if let Some(ws) = &weights {
        if ws.len() != xs.len() {
            bail!(
                "weights {} must have the rank of the input {}",
                dims::format_shape(ws),
                dims::format_shape(&xs)
            );
        }
        let group = ctx.attr_int_or("group", 1)?;
        if let (Dim::Fixed(c), Dim::Fixed(wc)) = (&xs[1], &ws[1]) {
            if group <= 0 || *c as i64 != *wc as i64 * group {
                bail!("input channels {c} must equal weight channels {wc} x group {group}");
            }
        }
    }
    let channels = weights.as_ref().map_or(Dim::Unknown, |w| w[0].clone());
    let mut out = vec![xs[0].clone(), channels];
    match kernel_of(ctx, weights.as_deref(), n)? {
        Some(k) => out.extend(window_attrs(ctx, k)?.output(&xs[2..], false)?),
        None => out.extend(vec![Dim::Unknown; n]),
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Conv, DeformConv and FusedConv: the input's element type.
fn conv(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    conv_shape(ctx, 0, 1, dtype)
}

fn conv_integer(ctx: &mut NodeContext<'_>) -> RuleResult {
    conv_shape(ctx, 0, 1, DataType::Int32)
}

/// The element type is y_zero_point's.
fn qlinear_conv(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(if ctx.has_input(7) { 7 } else { 0 })?;
    conv_shape(ctx, 0, 3, dtype)
}

/// Y = [N, W[1]*group, out...]: `output_shape` when given, else
/// `stride*(in-1) + output_padding + (k-1)*dilation + 1 - pads` (`in*stride` with SAME).
fn conv_transpose(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = batch_channels_spatial(ctx, 0)?;
    let n = xs.len() - 2;
    let weights = ctx.input_shape(1).ok().map(<[Dim]>::to_vec);
    if let Some(ws) = &weights {
        if ws.len() != xs.len() {
            bail!(
                "weights {} must have the input's rank {}",
                dims::format_shape(ws),
                xs.len()
            );
        }
    }
    let group = ctx.attr_int_or("group", 1)?;
    if group <= 0 {
        bail!("group {group} must be positive");
    }
    let channels = match weights.as_ref().map(|w| &w[1]) {
        Some(Dim::Fixed(m)) => Dim::Fixed(m.saturating_mul(group as usize)),
        Some(d) if group == 1 => d.clone(),
        _ => Dim::Unknown,
    };
    let mut out = vec![xs[0].clone(), channels];
    if let Some(shape) = ctx.attr_ints("output_shape")? {
        if shape.len() < n || shape.iter().any(|&s| s < 0) {
            bail!("output_shape {shape:?} does not give {n} spatial sizes");
        }
        out.extend(
            shape[shape.len() - n..]
                .iter()
                .map(|&s| Dim::Fixed(s as usize)),
        );
        ctx.set_output_tensor(0, dtype, Some(out));
        return Ok(());
    }
    let Some(kernel) = kernel_of(ctx, weights.as_deref(), n)? else {
        out.extend(vec![Dim::Unknown; n]);
        ctx.set_output_tensor(0, dtype, Some(out));
        return Ok(());
    };
    let w = window_attrs(ctx, kernel)?;
    let output_padding = per_axis(ctx, "output_padding", n, 0)?;
    for (i, d) in xs[2..].iter().enumerate() {
        let Dim::Fixed(size) = d else {
            out.push(Dim::Unknown);
            continue;
        };
        let size = *size as i64;
        let total = match w.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => size.saturating_mul(w.strides[i]),
            "VALID" | "NOTSET" => {
                let pads = if w.auto_pad == "VALID" {
                    0
                } else {
                    w.pads[i].saturating_add(w.pads[i + n])
                };
                let extent = (w.kernel[i] - 1)
                    .saturating_mul(w.dilations[i])
                    .saturating_add(1);
                w.strides[i]
                    .saturating_mul(size - 1)
                    .saturating_add(output_padding[i])
                    .saturating_add(extent)
                    .saturating_sub(pads)
            }
            other => bail!("unknown auto_pad '{other}'"),
        };
        if total < 0 {
            bail!("output size {total} along spatial axis {i} is negative");
        }
        out.push(Dim::Fixed(total as usize));
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// MaxPool, AveragePool and LpPool: [N, C, out...]; MaxPool's Indices are int64 of that shape.
fn pool(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    ctx.set_output_tensor(1, DataType::Int64, None);
    let xs = batch_channels_spatial(ctx, 0)?;
    let Some(kernel) = ctx.attr_ints("kernel_shape")? else {
        bail!("attribute 'kernel_shape' is required");
    };
    if kernel.len() != xs.len() - 2 {
        bail!(
            "kernel_shape {kernel:?} does not match input {}",
            dims::format_shape(&xs)
        );
    }
    let ceil_mode = ctx.attr_int_or("ceil_mode", 0)? != 0;
    let mut out = xs[..2].to_vec();
    out.extend(window_attrs(ctx, kernel)?.output(&xs[2..], ceil_mode)?);
    ctx.set_output_tensor(0, dtype, Some(out.clone()));
    ctx.set_output_tensor(1, DataType::Int64, Some(out));
    Ok(())
}

/// [N, C, 1, 1, ...].
fn global_pool(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = batch_channels_spatial(ctx, 0)?;
    let mut out = xs[..2].to_vec();
    out.resize(xs.len(), Dim::Fixed(1));
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// The `output_shape` input when given, else `(in-1)*stride + kernel - pads` per spatial axis.
fn max_unpool(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = batch_channels_spatial(ctx, 0)?;
    let n = xs.len() - 2;
    if ctx.has_input(2) {
        let shape = match ctx.input_value(2) {
            Some(v) if v.elems.len() == xs.len() => v.elems.iter().map(SymInt::to_dim).collect(),
            Some(v) => bail!(
                "output_shape has {} values for an input of rank {}",
                v.elems.len(),
                xs.len()
            ),
            None => vec![Dim::Unknown; xs.len()],
        };
        ctx.set_output_tensor(0, dtype, Some(shape));
        return Ok(());
    }
    let Some(kernel) = ctx.attr_ints("kernel_shape")? else {
        bail!("attribute 'kernel_shape' is required");
    };
    if kernel.len() != n {
        bail!(
            "kernel_shape {kernel:?} does not match input {}",
            dims::format_shape(&xs)
        );
    }
    let w = window_attrs(ctx, kernel)?;
    let mut out = xs[..2].to_vec();
    for (i, d) in xs[2..].iter().enumerate() {
        out.push(match d {
            Dim::Fixed(s) => {
                let size = (*s as i64 - 1)
                    .saturating_mul(w.strides[i])
                    .saturating_add(w.kernel[i])
                    .saturating_sub(w.pads[i].saturating_add(w.pads[i + n]));
                if size < 0 {
                    bail!("output size {size} along spatial axis {i} is negative");
                }
                Dim::Fixed(size as usize)
            }
            _ => Dim::Unknown,
        });
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// Output `out` is `[num_rois, C, height, width]`, num_rois from the first dim of `rois`.
fn roi_output(ctx: &mut NodeContext<'_>, rois_dims: Dim, height: i64, width: i64) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    if height < 0 || width < 0 {
        bail!("output size {height}x{width} must not be negative");
    }
    let channels = match ctx.input_shape(0) {
        Ok(s) if s.len() == 4 => s[1].clone(),
        Ok(s) => bail!(
            "input must be 4-D [N, C, H, W], got {}",
            dims::format_shape(s)
        ),
        Err(_) => Dim::Unknown,
    };
    let out = vec![
        rois_dims,
        channels,
        Dim::Fixed(height as usize),
        Dim::Fixed(width as usize),
    ];
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

fn max_roi_pool(ctx: &mut NodeContext<'_>) -> RuleResult {
    let Some(pooled) = ctx.attr_ints("pooled_shape")? else {
        bail!("attribute 'pooled_shape' is required");
    };
    if pooled.len() != 2 {
        bail!("pooled_shape {pooled:?} must have 2 values");
    }
    let rois = ctx
        .input_shape(1)
        .ok()
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Unknown);
    roi_output(ctx, rois, pooled[0], pooled[1])
}

fn roi_align(ctx: &mut NodeContext<'_>) -> RuleResult {
    let mut rois = ctx
        .input_shape(1)
        .ok()
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Unknown);
    if let Some(b) = ctx.input_shape(2).ok().and_then(|s| s.first()) {
        rois = unify(&rois, b)?;
    }
    let height = ctx.attr_int_or("output_height", 1)?;
    let width = ctx.attr_int_or("output_width", 1)?;
    roi_output(ctx, rois, height, width)
}

// ---------------------------------------------------------------------------------------------
// Resizing

/// `floor(size * scale)` in f32 like the runtime; a scale of 1 keeps even a symbolic size.
fn scaled(d: &Dim, scale: f32) -> RuleResult<Dim> {
    if scale.is_nan() || scale <= 0.0 {
        bail!("scale {scale} must be positive");
    }
    Ok(match d {
        Dim::Fixed(n) => Dim::Fixed((*n as f32 * scale).floor() as usize),
        _ if scale == 1.0 => d.clone(),
        _ => Dim::Unknown,
    })
}

/// Input shape with `scales` applied per axis (rank checked).
fn apply_scales(xs: &[Dim], axes: &[usize], scales: &[f32]) -> RuleResult<Vec<Dim>> {
    if scales.len() != axes.len() {
        bail!("{} scales for {} axes", scales.len(), axes.len());
    }
    let mut out = xs.to_vec();
    for (&a, &s) in axes.iter().zip(scales) {
        out[a] = scaled(&xs[a], s)?;
    }
    Ok(out)
}

/// Whether input `i` is given and not an empty tensor (Resize's "use the other one").
fn given_nonempty(ctx: &NodeContext<'_>, i: usize) -> bool {
    ctx.has_input(i)
        && !ctx.input_const(i).is_some_and(|t| t.is_empty())
        && !matches!(ctx.input_shape(i), Ok([Dim::Fixed(0)]))
}

/// Resize: `sizes` (on `axes`, adjusted by keep_aspect_ratio_policy) or `floor(in * scales)`.
fn resize(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = ctx.input_shape(0)?.to_vec();
    let rank = xs.len();
    let axes = match ctx.attr_ints("axes")? {
        Some(a) if ctx.opset() >= 18 => dims::normalize_axes(&a, rank)?,
        _ => (0..rank).collect(),
    };
    let unknown_on_axes = || {
        let mut out = xs.clone();
        for &a in &axes {
            out[a] = Dim::Unknown;
        }
        out
    };
    let scales_input = if ctx.opset() < 11 { 1 } else { 2 };
    let out = if ctx.opset() >= 11 && given_nonempty(ctx, 3) {
        if given_nonempty(ctx, scales_input) {
            bail!("only one of 'scales' and 'sizes' may be given");
        }
        match ctx.input_value(3).cloned() {
            Some(v) if v.elems.len() != axes.len() => {
                bail!("{} sizes for {} axes", v.elems.len(), axes.len())
            }
            Some(v) => resize_to_sizes(ctx, &xs, &axes, &v.elems)?,
            None => unknown_on_axes(),
        }
    } else if given_nonempty(ctx, scales_input) {
        match ctx.input_floats(scales_input) {
            Some(s) => apply_scales(&xs, &axes, &s.iter().map(|&x| x as f32).collect::<Vec<_>>())?,
            None => unknown_on_axes(),
        }
    } else {
        bail!("one of 'scales' and 'sizes' must be given");
    };
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

fn resize_to_sizes(
    ctx: &NodeContext<'_>,
    xs: &[Dim],
    axes: &[usize],
    sizes: &[SymInt],
) -> RuleResult<Vec<Dim>> {
    let policy = match ctx.attr_string("keep_aspect_ratio_policy")? {
        Some(p) if ctx.opset() >= 18 => p,
        _ => "stretch".into(),
    };
    let mut out = xs.to_vec();
    if policy == "stretch" {
        for (&a, s) in axes.iter().zip(sizes) {
            out[a] = s.to_dim();
        }
        return Ok(out);
    }
    let known: Option<Vec<(usize, f32)>> = axes
        .iter()
        .zip(sizes)
        .map(|(&a, s)| match (&xs[a], s.known()) {
            (Dim::Fixed(n), Some(s)) if *n > 0 => Some((*n, s as f32 / *n as f32)),
            _ => None,
        })
        .collect();
    let Some(known) = known else {
        for &a in axes {
            out[a] = Dim::Unknown;
        }
        return Ok(out);
    };
    let ratios = known.iter().map(|&(_, r)| r);
    let scale = match policy.as_str() {
        "not_larger" => ratios.fold(f32::INFINITY, f32::min),
        "not_smaller" => ratios.fold(0.0, f32::max),
        other => bail!("unknown keep_aspect_ratio_policy '{other}'"),
    };
    for (&a, &(n, _)) in axes.iter().zip(&known) {
        out[a] = Dim::Fixed((scale * n as f32 + 0.5).floor() as usize);
    }
    Ok(out)
}

/// Upsample: `floor(in * scale)` with scales from attributes (before opset 9) or input 1.
fn upsample(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = ctx.input_shape(0)?.to_vec();
    let scales: Option<Vec<f32>> = if ctx.opset() >= 9 {
        ctx.input_floats(1)
            .map(|s| s.iter().map(|&x| x as f32).collect())
    } else if let Some(s) = ctx.attr_floats("scales")? {
        Some(s)
    } else {
        let h = ctx.attr_float_or("height_scale", 1.0)?;
        let w = ctx.attr_float_or("width_scale", 1.0)?;
        if xs.len() != 4 {
            bail!(
                "Upsample-1 takes a 4-D input, got {}",
                dims::format_shape(&xs)
            );
        }
        Some(vec![1.0, 1.0, h, w])
    };
    let out = match scales {
        Some(s) => apply_scales(&xs, &(0..xs.len()).collect::<Vec<_>>(), &s)?,
        None => vec![Dim::Unknown; xs.len()],
    };
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// X [N, C, D1..Dr] sampled at grid [N, O1..Or, r]: [N, C, O1..Or].
fn grid_sample(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = batch_channels_spatial(ctx, 0)?;
    let mut out = xs[..2].to_vec();
    match ctx.input_shape(1) {
        Ok(g) => {
            if g.len() != xs.len() {
                bail!(
                    "grid {} must have the rank of X {}",
                    dims::format_shape(g),
                    dims::format_shape(&xs)
                );
            }
            out[0] = unify(&xs[0], &g[0])?;
            out.extend_from_slice(&g[1..g.len() - 1]);
        }
        Err(_) => out.extend(vec![Dim::Unknown; xs.len() - 2]),
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// theta [N, 2, 3] and size [N, C, H, W] give [N, H, W, 2]; 3-D: [N, D, H, W, 3].
fn affine_grid(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let size: Vec<Dim> = match ctx.input_value(1) {
        Some(v) => v.elems.iter().map(SymInt::to_dim).collect(),
        None => match ctx.input_shape(1) {
            Ok([Dim::Fixed(n)]) => vec![Dim::Unknown; *n],
            _ => return Ok(()),
        },
    };
    if size.len() != 4 && size.len() != 5 {
        bail!(
            "size must have 4 or 5 values ([N, C, H, W] or [N, C, D, H, W]), got {}",
            size.len()
        );
    }
    let mut out = vec![size[0].clone()];
    if let Ok(theta) = ctx.input_shape(0) {
        if theta.len() != 3 {
            bail!("theta must be 3-D, got {}", dims::format_shape(theta));
        }
        out[0] = unify(&out[0], &theta[0])?;
    }
    out.extend_from_slice(&size[2..]);
    out.push(Dim::Fixed(size.len() - 2));
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// input [N, C*prod(block), L] gives [N, C, image_shape...].
fn col2im(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let image: Vec<Dim> = match ctx.input_value(1) {
        Some(v) => v.elems.iter().map(SymInt::to_dim).collect(),
        None => match ctx.input_shape(1) {
            Ok([Dim::Fixed(n)]) => vec![Dim::Unknown; *n],
            _ => return Ok(()),
        },
    };
    let xs = ctx.input_shape(0).ok().map(<[Dim]>::to_vec);
    if let Some(xs) = &xs {
        if xs.len() != 3 {
            bail!(
                "input must be 3-D [N, C*prod(block_shape), L], got {}",
                dims::format_shape(xs)
            );
        }
    }
    let batch = xs.as_ref().map_or(Dim::Unknown, |x| x[0].clone());
    let channels = match (xs.as_ref().map(|x| &x[1]), ctx.input_ints(2)) {
        (Some(Dim::Fixed(c)), Some(block)) => {
            let area = block
                .iter()
                .try_fold(1i64, |a, &b| a.checked_mul(b))
                .unwrap_or(0);
            if area <= 0 || *c as i64 % area != 0 {
                bail!("input channels {c} are not a multiple of the block area {area}");
            }
            Dim::Fixed(*c / area as usize)
        }
        _ => Dim::Unknown,
    };
    let mut out = vec![batch, channels];
    out.extend(image);
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// [selected, 3] int64 triples (batch, class, box).
fn non_max_suppression(ctx: &mut NodeContext<'_>) -> RuleResult {
    ctx.set_output_tensor(0, DataType::Int64, Some(vec![Dim::Unknown, Dim::Fixed(3)]));
    Ok(())
}

/// uint8 [H, W, C] with C = 1 for Grayscale, 3 for RGB and BGR.
fn image_decoder(ctx: &mut NodeContext<'_>) -> RuleResult {
    let channels = match ctx.attr_string("pixel_format")?.as_deref() {
        None | Some("RGB") | Some("BGR") => 3,
        Some("Grayscale") => 1,
        Some(other) => bail!("unknown pixel_format '{other}'"),
    };
    let shape = vec![Dim::Unknown, Dim::Unknown, Dim::Fixed(channels)];
    ctx.set_output_tensor(0, DataType::Uint8, Some(shape));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recurrent nets

/// RNN, GRU, LSTM: Y [seq, dirs, batch, hidden] and Y_h (and LSTM's Y_c) [dirs, batch, hidden];
/// with layout 1: [batch, seq, dirs, hidden] and [batch, dirs, hidden].
fn recurrent(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    for i in 0..3 {
        ctx.set_output_tensor(i, dtype, None);
    }
    let xs = ctx.input_shape(0)?.to_vec();
    if xs.len() != 3 {
        bail!("X must be 3-D, got {}", dims::format_shape(&xs));
    }
    let layout = if ctx.opset() >= 14 {
        ctx.attr_int_or("layout", 0)?
    } else {
        0
    };
    let (seq, batch) = match layout {
        0 => (xs[0].clone(), xs[1].clone()),
        1 => (xs[1].clone(), xs[0].clone()),
        other => bail!("layout {other} must be 0 or 1"),
    };
    let dirs = match ctx.attr_string("direction")?.as_deref() {
        None | Some("forward") | Some("reverse") => 1,
        Some("bidirectional") => 2,
        Some(other) => bail!("unknown direction '{other}'"),
    };
    let hidden = match ctx.attr_int("hidden_size")? {
        Some(h) if h > 0 => Dim::Fixed(h as usize),
        Some(h) => bail!("hidden_size {h} must be positive"),
        None => ctx
            .input_shape(2)
            .ok()
            .and_then(|r| r.get(2).cloned())
            .unwrap_or(Dim::Unknown),
    };
    let dirs = Dim::Fixed(dirs);
    let (y, state) = if layout == 0 {
        (
            vec![seq, dirs.clone(), batch.clone(), hidden.clone()],
            vec![dirs, batch, hidden],
        )
    } else {
        (
            vec![batch.clone(), seq, dirs.clone(), hidden.clone()],
            vec![batch, dirs, hidden],
        )
    };
    ctx.set_output_tensor(0, dtype, Some(y));
    ctx.set_output_tensor(1, dtype, Some(state.clone()));
    ctx.set_output_tensor(2, dtype, Some(state));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Attention

/// A 3-D or 4-D attention input as (batch, heads, seq, head size); 3-D ones are split into
/// `heads` (the attribute, required then).
fn heads_view(ctx: &NodeContext<'_>, i: usize, heads: Option<i64>) -> RuleResult<Option<[Dim; 4]>> {
    let Ok(s) = ctx.input_shape(i) else {
        return Ok(None);
    };
    Ok(Some(match s.len() {
        4 => [s[0].clone(), s[1].clone(), s[2].clone(), s[3].clone()],
        3 => {
            let Some(h) = heads else {
                bail!("3-D input {i} needs the q_num_heads and kv_num_heads attributes");
            };
            let size = dims::divide(&s[2], h as usize, "hidden size")?;
            [s[0].clone(), Dim::Fixed(h as usize), s[1].clone(), size]
        }
        _ => bail!(
            "input {i} must be 3-D or 4-D, got {}",
            dims::format_shape(s)
        ),
    }))
}

/// Attention (opset 23+): Y like Q with V's head size; present key/value [B, Hkv, past+kv, ...];
/// qk_matmul_output [B, Hq, Sq, past+kv].
fn attention(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let v_dtype = ctx.input_dtype(2).unwrap_or(dtype);
    ctx.set_output_tensor(0, dtype, None);
    ctx.set_output_tensor(1, dtype, None);
    ctx.set_output_tensor(2, v_dtype, None);
    ctx.set_output_tensor(3, dtype, None);
    let qh = ctx.attr_int("q_num_heads")?;
    let kvh = ctx.attr_int("kv_num_heads")?;
    if qh.is_some_and(|h| h <= 0) || kvh.is_some_and(|h| h <= 0) {
        bail!("q_num_heads {qh:?} and kv_num_heads {kvh:?} must be positive");
    }
    let q_shape = ctx.input_shape(0)?.to_vec();
    let Some(q) = heads_view(ctx, 0, qh)? else {
        return Ok(());
    };
    let k = heads_view(ctx, 1, kvh)?;
    let v = heads_view(ctx, 2, kvh)?;
    let v_size = v.as_ref().map_or(Dim::Unknown, |v| v[3].clone());
    let y = if q_shape.len() == 4 {
        vec![q[0].clone(), q[1].clone(), q[2].clone(), v_size.clone()]
    } else {
        vec![
            q[0].clone(),
            q[2].clone(),
            dims::times(&v_size, qh.unwrap_or(1) as usize),
        ]
    };
    ctx.set_output_tensor(0, dtype, Some(y));
    let past = |i: usize| -> RuleResult<Option<Vec<Dim>>> {
        if !ctx.has_input(i) {
            return Ok(Some(Vec::new()));
        }
        match ctx.input_shape(i) {
            Ok(s) if s.len() == 4 => Ok(Some(s.to_vec())),
            Ok(s) => bail!("past input {i} must be 4-D, got {}", dims::format_shape(s)),
            Err(_) => Ok(None),
        }
    };
    let (past_key, past_value) = (past(4)?, past(5)?);
    let present = |cur: &Option<[Dim; 4]>, past: &Option<Vec<Dim>>| -> Option<Vec<Dim>> {
        let cur = cur.as_ref()?;
        let past = past.as_ref()?;
        Some(match past.as_slice() {
            [] => cur.to_vec(),
            p => vec![
                p[0].clone(),
                p[1].clone(),
                dims::plus(&p[2], &cur[2]),
                p[3].clone(),
            ],
        })
    };
    let present_key = present(&k, &past_key);
    let present_value = present(&v, &past_value);
    let total = present_key.as_ref().map_or(Dim::Unknown, |p| p[2].clone());
    if ctx.has_output(1) || ctx.has_output(2) {
        if past_key.as_ref().is_some_and(Vec::is_empty) {
            bail!("present_key and present_value need past_key and past_value");
        }
        ctx.set_output_tensor(1, dtype, present_key);
        ctx.set_output_tensor(2, v_dtype, present_value);
    }
    ctx.set_output_tensor(
        3,
        dtype,
        Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), total]),
    );
    Ok(())
}

/// FlexAttention: Q [B, Hq, Sq, d], V [B, Hkv, Skv, dv] give [B, Hq, Sq, dv].
fn flex_attention(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let q = ctx.input_shape(0)?.to_vec();
    if q.len() != 4 {
        bail!("Q must be 4-D, got {}", dims::format_shape(&q));
    }
    let dv = match ctx.input_shape(2) {
        Ok(v) if v.len() == 4 => v[3].clone(),
        Ok(v) => bail!("V must be 4-D, got {}", dims::format_shape(v)),
        Err(_) => Dim::Unknown,
    };
    ctx.set_output_tensor(
        0,
        dtype,
        Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), dv]),
    );
    Ok(())
}

fn rotary_embedding(ctx: &mut NodeContext<'_>) -> RuleResult {
    same_as_input(ctx, 0, 0)
}

/// A and B of one shape (no broadcasting): Y has it.
fn swiglu(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let a = ctx.input_tensor(0)?.shape.clone();
    let b = ctx.input_tensor(1).ok().and_then(|t| t.shape.clone());
    let shape = match (a, b) {
        (Some(a), Some(b)) => {
            if a.len() != b.len() {
                bail!(
                    "A {} and B {} must have one shape",
                    dims::format_shape(&a),
                    dims::format_shape(&b)
                );
            }
            Some(
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| unify(x, y))
                    .collect::<RuleResult<_>>()?,
            )
        }
        (a, b) => a.or(b),
    };
    ctx.set_output_tensor(0, dtype, shape);
    Ok(())
}

/// query [B, T, Hq*dk], value [B, T, Hkv*dv]: output [B, T, Hq*dv] and present_state
/// [B, Hkv, dk, dv] (past_state's element type when given).
fn linear_attention(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    let state_dtype = if ctx.has_input(3) {
        ctx.input_dtype(3)?
    } else {
        dtype
    };
    ctx.set_output_tensor(0, dtype, None);
    ctx.set_output_tensor(1, state_dtype, None);
    let (Some(hq), Some(hkv)) = (ctx.attr_int("q_num_heads")?, ctx.attr_int("kv_num_heads")?)
    else {
        bail!("attributes 'q_num_heads' and 'kv_num_heads' are required");
    };
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        bail!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}");
    }
    let q = ctx.input_shape(0)?.to_vec();
    if q.len() != 3 {
        bail!(
            "query must be 3-D [B, T, H*D], got {}",
            dims::format_shape(&q)
        );
    }
    let dk = dims::divide(&q[2], hq as usize, "query hidden size")?;
    let dv = match ctx.input_shape(2) {
        Ok(v) if v.len() == 3 => dims::divide(&v[2], hkv as usize, "value hidden size")?,
        Ok(v) => bail!(
            "value must be 3-D [B, T, H*D], got {}",
            dims::format_shape(v)
        ),
        Err(_) => Dim::Unknown,
    };
    let out = vec![q[0].clone(), q[1].clone(), dims::times(&dv, hq as usize)];
    ctx.set_output_tensor(0, dtype, Some(out));
    let state = vec![q[0].clone(), Dim::Fixed(hkv as usize), dk, dv];
    ctx.set_output_tensor(1, state_dtype, Some(state));
    Ok(())
}

/// input [B, C, L] and weight [C, 1, k]: output like the input, present_state [B, C, k-1].
fn causal_conv_with_state(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    ctx.set_output_tensor(1, dtype, None);
    let xs = ctx.input_shape(0)?.to_vec();
    if xs.len() != 3 {
        bail!(
            "input must be 3-D [B, C, L], got {}",
            dims::format_shape(&xs)
        );
    }
    ctx.set_output_tensor(0, dtype, Some(xs.clone()));
    let carry = match ctx.input_shape(1) {
        Ok([_, _, Dim::Fixed(0)]) => bail!("weight kernel size must be positive"),
        Ok([_, _, Dim::Fixed(k)]) => Dim::Fixed(k - 1),
        Ok(w) if w.len() != 3 => bail!(
            "weight must be 3-D [C, 1, k], got {}",
            dims::format_shape(w)
        ),
        _ => Dim::Unknown,
    };
    ctx.set_output_tensor(1, dtype, Some(vec![xs[0].clone(), xs[1].clone(), carry]));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Signal processing

fn half_plus_one(d: &Dim) -> Dim {
    match d {
        Dim::Fixed(n) => Dim::Fixed(n / 2 + 1),
        _ => Dim::Unknown,
    }
}

/// DFT: the input [..., 1|2] with the last dim 2 (1 for the inverse onesided IRFFT) and the
/// transformed axis of dft_length (default: its size, `2*(size-1)` for IRFFT), `/2 + 1` for the
/// forward onesided RFFT. The axis is an attribute before opset 20, then input 2.
fn dft(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = ctx.input_shape(0)?.to_vec();
    let rank = xs.len();
    if rank < 2 {
        bail!(
            "input must have rank 2 or more, got {}",
            dims::format_shape(&xs)
        );
    }
    let onesided = ctx.attr_int_or("onesided", 0)? != 0;
    let inverse = ctx.attr_int_or("inverse", 0)? != 0;
    let axis = if ctx.opset() >= 20 {
        if ctx.has_input(2) {
            ctx.input_ints(2).and_then(|a| a.first().copied())
        } else {
            Some(-2)
        }
    } else {
        Some(ctx.attr_int_or("axis", 1)?)
    };
    let mut out = xs.clone();
    out[rank - 1] = Dim::Fixed(if onesided && inverse { 1 } else { 2 });
    let resized = ctx.has_input(1) || onesided;
    match axis {
        None if resized => out[..rank - 1].fill(Dim::Unknown),
        None => {}
        Some(axis) => {
            let axis = dims::normalize_axis(axis, rank)?;
            if axis == rank - 1 {
                bail!("axis {axis} is the last (complex) dimension");
            }
            let length = if ctx.has_input(1) {
                ctx.input_scalar_dim(1)
            } else if onesided && inverse {
                match &xs[axis] {
                    Dim::Fixed(n) if *n > 0 => Dim::Fixed(2 * (n - 1)),
                    _ => Dim::Unknown,
                }
            } else {
                xs[axis].clone()
            };
            out[axis] = if onesided && !inverse {
                half_plus_one(&length)
            } else {
                length
            };
        }
    }
    ctx.set_output_tensor(0, dtype, Some(out));
    Ok(())
}

/// STFT: signal [B, L, 1|2] gives [B, frames, bins, 2] with
/// `frames = (L - frame_length) / frame_step + 1` and `bins = frame_length (/2 + 1 onesided)`.
fn stft(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = ctx.input_dtype(0)?;
    ctx.set_output_tensor(0, dtype, None);
    let xs = ctx.input_shape(0)?.to_vec();
    if xs.len() != 3 {
        bail!(
            "signal must be 3-D [batch, length, 1|2], got {}",
            dims::format_shape(&xs)
        );
    }
    let step = ctx.input_ints(1).and_then(|s| s.first().copied());
    let frame_length = if ctx.has_input(3) {
        ctx.input_scalar_dim(3)
    } else if ctx.has_input(2) {
        ctx.input_shape(2)
            .ok()
            .and_then(|w| w.first().cloned())
            .unwrap_or(Dim::Unknown)
    } else {
        Dim::Unknown
    };
    let frames = match (&xs[1], &frame_length, step) {
        (_, _, Some(s)) if s <= 0 => bail!("frame_step {s} must be positive"),
        (Dim::Fixed(len), Dim::Fixed(f), Some(s)) => {
            if f > len {
                bail!("frame_length {f} is longer than the signal {len}");
            }
            Dim::Fixed((len - f) / s as usize + 1)
        }
        _ => Dim::Unknown,
    };
    let bins = if ctx.attr_int_or("onesided", 1)? != 0 {
        half_plus_one(&frame_length)
    } else {
        frame_length
    };
    ctx.set_output_tensor(
        0,
        dtype,
        Some(vec![xs[0].clone(), frames, bins, Dim::Fixed(2)]),
    );
    Ok(())
}

fn output_datatype(ctx: &NodeContext<'_>) -> RuleResult<DataType> {
    Ok(ctx
        .attr_dtype("output_datatype")?
        .unwrap_or(DataType::Float))
}

/// [size] of output_datatype (float by default).
fn window(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = output_datatype(ctx)?;
    let size = ctx.input_scalar_dim(0);
    ctx.set_output_tensor(0, dtype, Some(vec![size]));
    Ok(())
}

/// [dft_length / 2 + 1, num_mel_bins] of output_datatype.
fn mel_weight_matrix(ctx: &mut NodeContext<'_>) -> RuleResult {
    let dtype = output_datatype(ctx)?;
    let bins = half_plus_one(&ctx.input_scalar_dim(1));
    let mels = ctx.input_scalar_dim(0);
    ctx.set_output_tensor(0, dtype, Some(vec![bins, mels]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use runnx_ir::{AttributeValue, DataType, Tensor};

    use crate::testing::{
        fixed, graph, infer_node, known_shape, model, node, sym, tensor_info, try_infer_strict,
    };
    use crate::{infer, InferOptions};

    #[test]
    fn conv_same_upper_keeps_batch_symbol() {
        let out = infer_node(
            "",
            22,
            "Conv",
            &[
                ("x", vec![sym("N"), fixed(3), fixed(7), fixed(8)]),
                ("w", vec![fixed(16), fixed(3), fixed(3), fixed(3)]),
            ],
            &[],
            vec![
                (
                    "auto_pad",
                    AttributeValue::String("SAME_UPPER".as_bytes().to_vec()),
                ),
                ("strides", AttributeValue::Ints([2, 2].to_vec())),
            ],
            1,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![sym("N"), fixed(16), fixed(4), fixed(4)]
        );
    }

    #[test]
    fn fused_conv_is_a_conv() {
        let out = infer_node(
            "com.microsoft",
            1,
            "FusedConv",
            &[
                ("x", vec![fixed(1), fixed(4), fixed(5), fixed(5)]),
                ("w", vec![fixed(8), fixed(2), fixed(3), fixed(3)]),
            ],
            &[],
            vec![
                ("pads", AttributeValue::Ints([1, 1, 1, 1].to_vec())),
                ("group", AttributeValue::Int(2)),
            ],
            1,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![fixed(1), fixed(8), fixed(5), fixed(5)]
        );
    }

    #[test]
    fn conv_transpose_output_padding_and_group() {
        let out = infer_node(
            "",
            11,
            "ConvTranspose",
            &[
                ("x", vec![fixed(1), fixed(4), fixed(3), fixed(3)]),
                ("w", vec![fixed(4), fixed(2), fixed(3), fixed(3)]),
            ],
            &[],
            vec![
                ("strides", AttributeValue::Ints([3, 2].to_vec())),
                ("output_padding", AttributeValue::Ints([1, 1].to_vec())),
                ("group", AttributeValue::Int(2)),
            ],
            1,
        );
        // 3*(3-1)+1+3 = 10, 2*(3-1)+1+3 = 8; channels 2*2.
        assert_eq!(
            known_shape(&out[0]),
            vec![fixed(1), fixed(4), fixed(10), fixed(8)]
        );
    }

    #[test]
    fn maxpool_ceil_mode_and_indices() {
        let out = infer_node(
            "",
            12,
            "MaxPool",
            &[("x", vec![fixed(1), fixed(1), fixed(4), fixed(4)])],
            &[],
            vec![
                ("kernel_shape", AttributeValue::Ints([3, 3].to_vec())),
                ("strides", AttributeValue::Ints([2, 2].to_vec())),
                ("ceil_mode", AttributeValue::Int(1)),
            ],
            2,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![fixed(1), fixed(1), fixed(2), fixed(2)]
        );
        assert_eq!(out[1].as_tensor().unwrap().dtype, DataType::Int64);
    }

    #[test]
    fn resize_sizes_on_negative_axes_not_larger() {
        let sizes = Tensor::from_vec([2], vec![7i64, 8]).unwrap();
        let out = infer_node(
            "",
            19,
            "Resize",
            &[
                ("x", vec![sym("N"), fixed(3), fixed(10), fixed(20)]),
                ("roi", vec![fixed(0)]),
                ("scales", vec![fixed(0)]),
            ],
            &[("sizes", sizes)],
            vec![
                ("axes", AttributeValue::Ints([-2, -1].to_vec())),
                (
                    "keep_aspect_ratio_policy",
                    AttributeValue::String("not_larger".as_bytes().to_vec()),
                ),
            ],
            1,
        );
        // scale = min(7/10, 8/20) = 0.4: 4 x 8.
        assert_eq!(
            known_shape(&out[0]),
            vec![sym("N"), fixed(3), fixed(4), fixed(8)]
        );
    }

    #[test]
    fn lstm_layout_one_bidirectional() {
        let out = infer_node(
            "",
            14,
            "LSTM",
            &[
                ("x", vec![sym("B"), fixed(5), fixed(3)]),
                ("w", vec![fixed(2), fixed(16), fixed(3)]),
                ("r", vec![fixed(2), fixed(16), fixed(4)]),
            ],
            &[],
            vec![
                (
                    "direction",
                    AttributeValue::String("bidirectional".as_bytes().to_vec()),
                ),
                ("layout", AttributeValue::Int(1)),
            ],
            3,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![sym("B"), fixed(5), fixed(2), fixed(4)]
        );
        assert_eq!(known_shape(&out[2]), vec![sym("B"), fixed(2), fixed(4)]);
    }

    #[test]
    fn dft_opset20_axis_input_onesided() {
        let axis = Tensor::scalar(-2i64);
        let length = Tensor::scalar(10i64);
        let out = infer_node(
            "",
            20,
            "DFT",
            &[("x", vec![sym("B"), fixed(3), fixed(8), fixed(1)])],
            &[("len", length), ("axis", axis)],
            vec![("onesided", AttributeValue::Int(1))],
            1,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![sym("B"), fixed(3), fixed(6), fixed(2)]
        );
    }

    #[test]
    fn attention_3d_with_past() {
        let heads = |n, v| (n, AttributeValue::Int(v));
        let out = infer_node(
            "",
            23,
            "Attention",
            &[
                ("q", vec![fixed(2), fixed(4), fixed(64)]),
                ("k", vec![fixed(2), fixed(6), fixed(32)]),
                ("v", vec![fixed(2), fixed(6), fixed(48)]),
                ("", vec![]),
                ("pk", vec![fixed(2), fixed(2), fixed(5), fixed(16)]),
                ("pv", vec![fixed(2), fixed(2), fixed(5), fixed(24)]),
            ],
            &[],
            vec![heads("q_num_heads", 4), heads("kv_num_heads", 2)],
            4,
        );
        assert_eq!(known_shape(&out[0]), vec![fixed(2), fixed(4), fixed(96)]);
        assert_eq!(
            known_shape(&out[1]),
            vec![fixed(2), fixed(2), fixed(11), fixed(16)]
        );
        assert_eq!(
            known_shape(&out[2]),
            vec![fixed(2), fixed(2), fixed(11), fixed(24)]
        );
        assert_eq!(
            known_shape(&out[3]),
            vec![fixed(2), fixed(4), fixed(4), fixed(11)]
        );
    }

    #[test]
    fn resize_scales_keep_symbolic_batch() {
        let scales = Tensor::from_vec([4], vec![1.0f32, 1.0, 2.0, 1.5]).unwrap();
        let out = infer_node(
            "",
            13,
            "Resize",
            &[
                ("x", vec![sym("N"), fixed(3), fixed(5), fixed(5)]),
                ("roi", vec![fixed(0)]),
            ],
            &[("scales", scales)],
            vec![],
            1,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![sym("N"), fixed(3), fixed(10), fixed(7)]
        );
    }

    #[test]
    fn dft_opset17_irfft_is_real() {
        let out = infer_node(
            "",
            17,
            "DFT",
            &[("x", vec![fixed(1), fixed(6), fixed(10), fixed(2)])],
            &[],
            vec![
                ("inverse", AttributeValue::Int(1)),
                ("onesided", AttributeValue::Int(1)),
            ],
            1,
        );
        assert_eq!(
            known_shape(&out[0]),
            vec![fixed(1), fixed(10), fixed(10), fixed(1)]
        );
    }

    #[test]
    fn conv_channel_mismatch_is_reported() {
        let inputs = vec![
            tensor_info(
                "x",
                DataType::Float,
                vec![fixed(1), fixed(3), fixed(5), fixed(5)],
            ),
            tensor_info(
                "w",
                DataType::Float,
                vec![fixed(8), fixed(2), fixed(3), fixed(3)],
            ),
        ];
        let conv = node("Conv", &["x", "w"], &["y"], vec![]);
        let m = model(22, graph(inputs, vec![], vec![conv], &[]));
        let inference = infer(&m, &InferOptions::default()).unwrap();
        assert_eq!(inference.problems.len(), 1);
        assert!(try_infer_strict(&m).is_err());
    }
}
