//! Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 1, 7, 9, 10).
//!
//! Both are written as one separable resampler: every resized axis gets a table giving, for
//! each output position, the input positions it reads (its taps) and their weights. Numeric
//! data is then resampled one axis at a time in f64 (the onnx reference computes in double too,
//! so outputs round once, at the end; integer outputs round half to even and saturate). Nearest
//! mode has one tap of weight 1 per position, so it is a pure gather and works for every element
//! type, strings and complex numbers included.
//!
//! Source coordinates follow the ONNX `coordinate_transformation_mode` formulas, where
//! `length_resized` is the unrounded `scale · length_original` (as in the onnx reference, whose
//! outputs the conformance suite holds). Taps outside the input repeat its edge, unless
//! `exclude_outside` drops them (renormalising the rest).

use rayon::prelude::*;
use runnx_ir::{Tensor, TensorData, Value};

use super::image::from_f64_rounded;
use super::shape::copy::for_row_chunks;
use super::shape::dispatch::{to_f64_vec, with_num_type, Num, NumFn};
use super::shape::{ints_input, normalize_axes};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Resize", &[10, 11, 13, 18, 19], build_resize);
    reg.add_versions("", "Upsample", &[1, 7, 9, 10], build_upsample);
}

/// Which input position a nearest-mode output takes when the source coordinate falls between
/// two pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Upsample and Resize-10, which predate `nearest_mode`: floor when enlarging an axis, ceil
    /// when shrinking it (the behaviour onnxruntime kept for these versions).
    Legacy,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interpolation {
    Nearest(NearestMode),
    Linear,
    /// Keys' cubic convolution with coefficient `a`.
    Cubic(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
    /// Opset 11 only: half_pixel without the final -0.5 shift.
    TfHalfPixelForNn,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AspectPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Where the node gives its scales (and sizes, roi).
#[derive(Clone, Debug)]
enum Target {
    /// Upsample-1 `height_scale`/`width_scale` and Upsample-7 `scales` attributes.
    ScalesAttr(Vec<f32>),
    /// Upsample-9/10 and Resize-10: `scales` is input 1.
    ScalesInput,
    /// Resize-11+: `roi`, `scales`, `sizes` are inputs 1, 2, 3.
    RoiScalesSizes,
}

/// ONNX `Resize` and `Upsample`, configured once per node.
#[derive(Debug)]
struct Resample {
    op: &'static str,
    interpolation: Interpolation,
    coord: CoordMode,
    exclude_outside: bool,
    extrapolation_value: f64,
    antialias: bool,
    axes: Option<Vec<i64>>,
    policy: AspectPolicy,
    target: Target,
}

fn build_resize(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let legacy = info.opset < 11;
    let mode = info.attr_string("mode", "nearest")?;
    let nearest = if legacy {
        NearestMode::Legacy
    } else {
        match info
            .attr_string("nearest_mode", "round_prefer_floor")?
            .as_str()
        {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => {
                return Err(OpError::attribute(
                    "nearest_mode",
                    format!("unknown mode '{other}'"),
                ))
            }
        }
    };
    let interpolation = match mode.as_str() {
        "nearest" => Interpolation::Nearest(nearest),
        "linear" => Interpolation::Linear,
        "cubic" if !legacy => {
            Interpolation::Cubic(f64::from(info.attr_float("cubic_coeff_a", -0.75)?))
        }
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("unknown mode '{other}'"),
            ))
        }
    };
    let coord = if legacy {
        CoordMode::Asymmetric
    } else {
        match info
            .attr_string("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => CoordMode::HalfPixel,
            "half_pixel_symmetric" if info.opset >= 19 => CoordMode::HalfPixelSymmetric,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "tf_crop_and_resize" => CoordMode::TfCropAndResize,
            "tf_half_pixel_for_nn" if info.opset < 13 => CoordMode::TfHalfPixelForNn,
            other => {
                return Err(OpError::attribute(
                    "coordinate_transformation_mode",
                    format!("unknown mode '{other}' at opset {}", info.opset),
                ))
            }
        }
    };
    let policy = if info.opset >= 18 {
        match info
            .attr_string("keep_aspect_ratio_policy", "stretch")?
            .as_str()
        {
            "stretch" => AspectPolicy::Stretch,
            "not_larger" => AspectPolicy::NotLarger,
            "not_smaller" => AspectPolicy::NotSmaller,
            other => {
                return Err(OpError::attribute(
                    "keep_aspect_ratio_policy",
                    format!("unknown policy '{other}'"),
                ))
            }
        }
    } else {
        AspectPolicy::Stretch
    };
    let antialias = info.opset >= 18 && info.attr_int("antialias", 0)? != 0;
    if antialias && matches!(interpolation, Interpolation::Nearest(_)) {
        return Err(OpError::attribute(
            "antialias",
            "antialiasing applies to linear and cubic modes only",
        ));
    }
    Ok(Box::new(Resample {
        op: "Resize",
        interpolation,
        coord,
        exclude_outside: !legacy && info.attr_int("exclude_outside", 0)? != 0,
        extrapolation_value: if legacy {
            0.0
        } else {
            f64::from(info.attr_float("extrapolation_value", 0.0)?)
        },
        antialias,
        axes: if info.opset >= 18 {
            info.attr_ints_opt("axes")?
        } else {
            None
        },
        policy,
        target: if legacy {
            Target::ScalesInput
        } else {
            Target::RoiScalesSizes
        },
    }))
}

fn build_upsample(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let mode = info.attr_string("mode", "nearest")?;
    let interpolation = match mode.as_str() {
        "nearest" => Interpolation::Nearest(NearestMode::Legacy),
        "linear" if info.opset >= 7 => Interpolation::Linear,
        "bilinear" if info.opset < 7 => Interpolation::Linear,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("unknown mode '{other}'"),
            ))
        }
    };
    let target = match info.opset {
        ..=6 => {
            // Upsample-1 scales the last two axes of a 4-D input.
            let h = info.attr_float_opt("height_scale")?;
            let w = info.attr_float_opt("width_scale")?;
            match (h, w) {
                (Some(h), Some(w)) => Target::ScalesAttr(vec![1.0, 1.0, h, w]),
                _ => {
                    return Err(OpError::attribute(
                        "height_scale",
                        "Upsample-1 needs height_scale and width_scale",
                    ))
                }
            }
        }
        7..=8 => Target::ScalesAttr(
            info.attr_floats_opt("scales")?
                .ok_or_else(|| OpError::attribute("scales", "is required"))?,
        ),
        _ => Target::ScalesInput,
    };
    Ok(Box::new(Resample {
        op: "Upsample",
        interpolation,
        coord: CoordMode::Asymmetric,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        axes: None,
        policy: AspectPolicy::Stretch,
        target,
    }))
}

/// The resampling of one axis: output length, scale and, per output position, `taps` input
/// indices (already clamped into the input) with their weights, and whether the position lies
/// outside the crop box (`tf_crop_and_resize`) and takes the extrapolation value instead.
struct AxisPlan {
    out_len: usize,
    taps: usize,
    index: Vec<usize>,
    weight: Vec<f64>,
    extrapolated: Vec<bool>,
}

/// What the inputs ask for: per axis of X, the output length, the scale and the crop box.
struct Geometry {
    out_shape: Vec<usize>,
    scales: Vec<f64>,
    roi: Vec<(f64, f64)>,
}

impl Resample {
    fn geometry(&self, inputs: &Inputs, in_shape: &[usize]) -> Result<Geometry, OpError> {
        let rank = in_shape.len();
        let axes = match &self.axes {
            Some(a) => normalize_axes(a, rank)?,
            None => (0..rank).collect(),
        };
        let nonempty = |i: usize| -> Result<Option<&Tensor>, OpError> {
            Ok(inputs.opt_tensor(i)?.filter(|t| !t.is_empty()))
        };
        let (scales_in, sizes_in, roi_in) = match &self.target {
            Target::ScalesAttr(s) => (Some(s.iter().map(|&v| f64::from(v)).collect()), None, None),
            Target::ScalesInput => {
                let t = inputs.tensor(1)?;
                (Some(to_f64_vec(t)?), None, None)
            }
            Target::RoiScalesSizes => {
                let scales = nonempty(2)?.map(to_f64_vec).transpose()?;
                let sizes = nonempty(3)?.map(|t| ints_input(t, 3)).transpose()?;
                if scales.is_some() && sizes.is_some() {
                    return Err(OpError::invalid(
                        "only one of 'scales' and 'sizes' may be given",
                    ));
                }
                let roi = match self.coord {
                    CoordMode::TfCropAndResize => nonempty(1)?.map(to_f64_vec).transpose()?,
                    _ => None,
                };
                (scales, sizes, roi)
            }
        };
        let count = |len: usize, what: &str, index: usize| {
            if len == axes.len() {
                Ok(())
            } else {
                Err(OpError::input(
                    index,
                    format!(
                        "{what} has {len} values for {} resized axes of a rank-{rank} input",
                        axes.len()
                    ),
                ))
            }
        };
        let mut scales = vec![1.0f64; rank];
        let mut out_shape = in_shape.to_vec();
        match (scales_in, sizes_in) {
            (Some(s), _) => {
                count(
                    s.len(),
                    "scales",
                    if matches!(self.target, Target::RoiScalesSizes) {
                        2
                    } else {
                        1
                    },
                )?;
                for (&axis, &scale) in axes.iter().zip(&s) {
                    if !(scale > 0.0 && scale.is_finite()) {
                        return Err(OpError::invalid(format!(
                            "{}: scale {scale} for axis {axis} must be positive",
                            self.op
                        )));
                    }
                    scales[axis] = scale;
                    out_shape[axis] = (scale * in_shape[axis] as f64).floor() as usize;
                }
            }
            (None, Some(sizes)) => {
                count(sizes.len(), "sizes", 3)?;
                let mut ratios = Vec::with_capacity(axes.len());
                for (&axis, &size) in axes.iter().zip(&sizes) {
                    let size = usize::try_from(size).map_err(|_| {
                        OpError::input(3, format!("size {size} for axis {axis} is negative"))
                    })?;
                    out_shape[axis] = size;
                    ratios.push(size as f64 / in_shape[axis] as f64);
                    scales[axis] = size as f64 / in_shape[axis] as f64;
                }
                let kept = match self.policy {
                    AspectPolicy::Stretch => None,
                    AspectPolicy::NotLarger => ratios.iter().copied().reduce(f64::min),
                    AspectPolicy::NotSmaller => ratios.iter().copied().reduce(f64::max),
                };
                if let Some(scale) = kept {
                    for &axis in &axes {
                        scales[axis] = scale;
                        // Round half up, as the spec's `round_int`.
                        out_shape[axis] = (scale * in_shape[axis] as f64 + 0.5).floor() as usize;
                    }
                }
            }
            (None, None) => {
                return Err(OpError::invalid(format!(
                    "{}: one of 'scales' and 'sizes' must be given",
                    self.op
                )))
            }
        }
        let mut roi = vec![(0.0, 1.0); rank];
        if let Some(r) = roi_in {
            if r.len() != 2 * axes.len() {
                return Err(OpError::input(
                    1,
                    format!("roi has {} values, expected {}", r.len(), 2 * axes.len()),
                ));
            }
            for (i, &axis) in axes.iter().enumerate() {
                roi[axis] = (r[i], r[axes.len() + i]);
            }
        } else if self.coord == CoordMode::TfCropAndResize {
            return Err(OpError::input(1, "tf_crop_and_resize needs a roi"));
        }
        Ok(Geometry {
            out_shape,
            scales,
            roi,
        })
    }

    /// The source coordinate of output position `y` along an axis.
    fn source_coordinate(
        &self,
        y: f64,
        scale: f64,
        in_len: usize,
        out_len: usize,
        roi: (f64, f64),
    ) -> f64 {
        let in_f = in_len as f64;
        // The unrounded output length; differs from `out_len` when `scale · in_len` is fractional.
        let resized = scale * in_f;
        match self.coord {
            CoordMode::HalfPixel => (y + 0.5) / scale - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let adjustment = out_len as f64 / resized;
                let offset = in_f / 2.0 * (1.0 - adjustment);
                offset + (y + 0.5) / scale - 0.5
            }
            CoordMode::PytorchHalfPixel => {
                if out_len > 1 {
                    (y + 0.5) / scale - 0.5
                } else {
                    -0.5
                }
            }
            CoordMode::AlignCorners => {
                if resized == 1.0 {
                    0.0
                } else {
                    y * (in_f - 1.0) / (resized - 1.0)
                }
            }
            CoordMode::Asymmetric => y / scale,
            CoordMode::TfHalfPixelForNn => (y + 0.5) / scale,
            CoordMode::TfCropAndResize => {
                let (start, end) = roi;
                let x = if resized == 1.0 {
                    (end - start) * (in_f - 1.0) / 2.0
                } else {
                    y * (end - start) * (in_f - 1.0) / (resized - 1.0)
                };
                x + start * (in_f - 1.0)
            }
        }
    }

    fn plan_axis(&self, in_len: usize, out_len: usize, scale: f64, roi: (f64, f64)) -> AxisPlan {
        // The filter support grows by 1/scale when antialiasing a downscale.
        let support =
            |radius: f64| (2 - 2 * ((-radius / scale.min(1.0)).floor() as isize + 1)) as usize;
        let taps = match self.interpolation {
            Interpolation::Nearest(_) => 1,
            Interpolation::Linear if self.antialias => support(1.0),
            Interpolation::Linear => 2,
            Interpolation::Cubic(_) if self.antialias => support(2.0),
            Interpolation::Cubic(_) => 4,
        };
        let mut plan = AxisPlan {
            out_len,
            taps,
            index: Vec::with_capacity(out_len * taps),
            weight: Vec::with_capacity(out_len * taps),
            extrapolated: vec![false; out_len],
        };
        let last = in_len.saturating_sub(1) as isize;
        let mut w = vec![0.0f64; taps];
        for y in 0..out_len {
            let x = self.source_coordinate(y as f64, scale, in_len, out_len, roi);
            if self.coord == CoordMode::TfCropAndResize && (x < 0.0 || x > last as f64) {
                plan.extrapolated[y] = true;
            }
            let floor = x.floor();
            if let Interpolation::Nearest(mode) = self.interpolation {
                let frac = x - floor;
                let up = match mode {
                    _ if frac == 0.0 => false,
                    NearestMode::RoundPreferFloor => frac > 0.5,
                    NearestMode::RoundPreferCeil => frac >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                    NearestMode::Legacy => scale < 1.0,
                };
                let i = floor as isize + isize::from(up);
                plan.index.push(i.clamp(0, last) as usize);
                plan.weight.push(1.0);
                continue;
            }
            // Taps sit at integer positions around x, the window starting so that x falls in
            // its middle; at an exact integer x the window leans left (the tap at x is the
            // right one of the middle pair), which gives the same weights either way.
            let exact = x == floor;
            let ratio = if exact { 1.0 } else { x - floor };
            let half = (taps / 2) as isize;
            let start = if exact {
                floor as isize - half
            } else {
                floor as isize - half + 1
            };
            self.weights(ratio, scale, &mut w);
            if self.exclude_outside {
                for (k, wk) in w.iter_mut().enumerate() {
                    let i = start + k as isize;
                    if i < 0 || i > last {
                        *wk = 0.0;
                    }
                }
                let sum: f64 = w.iter().sum();
                if sum != 0.0 {
                    w.iter_mut().for_each(|wk| *wk /= sum);
                }
            }
            for (k, &wk) in w.iter().enumerate() {
                plan.index
                    .push((start + k as isize).clamp(0, last) as usize);
                plan.weight.push(wk);
            }
        }
        plan
    }

    /// The weights of the taps `start..start+w.len()` for a source coordinate `ratio` past
    /// the tap left of the window's middle (`ratio` in (0, 1]).
    fn weights(&self, ratio: f64, scale: f64, w: &mut [f64]) {
        let n = w.len() as f64;
        // Offset of the first tap from the left-middle one.
        let first = 1.0 - n / 2.0;
        match self.interpolation {
            Interpolation::Nearest(_) => {}
            Interpolation::Linear if self.antialias => {
                let s = scale.min(1.0);
                for (k, wk) in w.iter_mut().enumerate() {
                    let d = (first + k as f64 - ratio) * s;
                    *wk = (1.0 - d.abs()).clamp(0.0, 1.0);
                }
                normalize(w);
            }
            Interpolation::Linear => {
                w[0] = 1.0 - ratio;
                w[1] = ratio;
            }
            Interpolation::Cubic(a) if self.antialias => {
                let s = scale.min(1.0);
                for (k, wk) in w.iter_mut().enumerate() {
                    *wk = cubic_kernel(a, (first + k as f64 - ratio) * s);
                }
                normalize(w);
            }
            Interpolation::Cubic(a) => {
                w[0] = cubic_kernel(a, 1.0 + ratio);
                w[1] = cubic_kernel(a, ratio);
                w[2] = cubic_kernel(a, 1.0 - ratio);
                w[3] = cubic_kernel(a, 2.0 - ratio);
            }
        }
    }
}

fn normalize(w: &mut [f64]) {
    let sum: f64 = w.iter().sum();
    w.iter_mut().for_each(|wk| *wk /= sum);
}

/// Keys' cubic convolution kernel with parameter `a`, at distance `x`.
fn cubic_kernel(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

impl Kernel for Resample {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let in_shape = x.shape();
        let geometry = self.geometry(&inputs, in_shape)?;
        // Axes whose resampling is the identity are skipped (exactly, whatever the mode).
        let plans: Vec<Option<AxisPlan>> = (0..in_shape.len())
            .map(|axis| {
                let (in_len, out_len) = (in_shape[axis], geometry.out_shape[axis]);
                let scale = geometry.scales[axis];
                let roi = geometry.roi[axis];
                let identity = out_len == in_len
                    && scale == 1.0
                    && (self.coord != CoordMode::TfCropAndResize || roi == (0.0, 1.0));
                (!identity && in_len > 0 && out_len > 0)
                    .then(|| self.plan_axis(in_len, out_len, scale, roi))
            })
            .collect();
        let out_shape = &geometry.out_shape;
        if out_shape.iter().product::<usize>() == 0 || x.is_empty() {
            return Ok(vec![Value::Tensor(Tensor::zeros(x.dtype(), out_shape))]);
        }
        let y = match self.interpolation {
            Interpolation::Nearest(_) => nearest(x, &plans, out_shape, self.extrapolation_value)?,
            _ => with_num_type(
                x.dtype(),
                Interpolate {
                    x,
                    plans: &plans,
                    extrapolation_value: self.extrapolation_value,
                },
            )
            .map_err(|_| {
                OpError::input(
                    0,
                    format!(
                        "{} interpolation needs a numeric tensor, got {}",
                        match self.interpolation {
                            Interpolation::Cubic(_) => "cubic",
                            _ => "linear",
                        },
                        x.dtype()
                    ),
                )
            })??,
        };
        Ok(vec![Value::Tensor(y)])
    }
}

/// Nearest-neighbour resampling of any element type: a gather by precomputed source offsets.
fn nearest(
    x: &Tensor,
    plans: &[Option<AxisPlan>],
    out_shape: &[usize],
    extrapolation_value: f64,
) -> Result<Tensor, OpError> {
    let in_shape = x.shape();
    let rank = in_shape.len();
    // Per axis and output position: the source offset contribution, `None` when extrapolated.
    let mut stride = 1usize;
    let mut offsets: Vec<Vec<Option<usize>>> = vec![Vec::new(); rank];
    for axis in (0..rank).rev() {
        offsets[axis] = match &plans[axis] {
            Some(p) => (0..p.out_len)
                .map(|j| (!p.extrapolated[j]).then(|| p.index[j] * stride))
                .collect(),
            None => (0..in_shape[axis]).map(|j| Some(j * stride)).collect(),
        };
        stride *= in_shape[axis];
    }
    let total: usize = out_shape.iter().product();
    let row = *out_shape.last().unwrap_or(&1);
    let mut src = vec![usize::MAX; total];
    for_row_chunks(&mut src, row.max(1), |first_row, chunk| {
        for (r, out) in chunk.chunks_mut(row.max(1)).enumerate() {
            // Decompose the row number into the leading output indices.
            let mut rest = first_row + r;
            let mut base = Some(0usize);
            for axis in (0..rank.saturating_sub(1)).rev() {
                let j = rest % out_shape[axis];
                rest /= out_shape[axis];
                base = base.zip(offsets[axis][j]).map(|(b, o)| b + o);
            }
            match (rank, base) {
                (0, _) => out[0] = 0,
                (_, Some(b)) => {
                    for (o, last) in out.iter_mut().zip(&offsets[rank - 1]) {
                        *o = last.map_or(usize::MAX, |l| b + l);
                    }
                }
                (_, None) => {}
            }
        }
    });
    let extrapolated: Vec<usize> = (0..total).filter(|&i| src[i] == usize::MAX).collect();
    let gathered = if extrapolated.is_empty() {
        x.data().gather(&src)
    } else {
        let idx: Vec<usize> = src
            .iter()
            .map(|&s| if s == usize::MAX { 0 } else { s })
            .collect();
        let mut data = x.data().gather(&idx);
        fill_positions(&mut data, &extrapolated, extrapolation_value)?;
        data
    };
    Ok(Tensor::new(out_shape, gathered)?)
}

/// Writes `value` (converted to the element type) at `positions` of `data`.
fn fill_positions(data: &mut TensorData, positions: &[usize], value: f64) -> Result<(), OpError> {
    struct Fill<'a> {
        data: &'a mut TensorData,
        positions: &'a [usize],
        value: f64,
    }
    impl NumFn for Fill<'_> {
        type Out = ();
        fn call<T: Num>(self) {
            if let Some(v) = T::vec_mut(self.data) {
                let value = from_f64_rounded::<T>(self.value);
                for &p in self.positions {
                    v[p] = value;
                }
            }
        }
    }
    let dtype = data.dtype();
    with_num_type(
        dtype,
        Fill {
            data,
            positions,
            value,
        },
    )
}

/// Linear and cubic resampling of a numeric tensor, one axis at a time in f64.
struct Interpolate<'a> {
    x: &'a Tensor,
    plans: &'a [Option<AxisPlan>],
    extrapolation_value: f64,
}

impl NumFn for Interpolate<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Num>(self) -> Result<Tensor, OpError> {
        let mut shape = self.x.shape().to_vec();
        let mut data = to_f64_vec(self.x)?;
        for (axis, plan) in self.plans.iter().enumerate() {
            if let Some(plan) = plan {
                data = resample_axis(&data, &shape, axis, plan, self.extrapolation_value);
                shape[axis] = plan.out_len;
            }
        }
        let out: Vec<T> = if data.len() >= crate::kernels::broadcast::PARALLEL_MIN_LEN {
            data.par_iter().map(|&v| from_f64_rounded::<T>(v)).collect()
        } else {
            data.iter().map(|&v| from_f64_rounded::<T>(v)).collect()
        };
        Ok(Tensor::from_vec(&shape, out)?)
    }
}

/// Resamples `data` (of `shape`) along `axis` by `plan`. Each output row (one position along
/// `axis`, all the trailing elements) is a weighted sum of whole input rows.
fn resample_axis(
    data: &[f64],
    shape: &[usize],
    axis: usize,
    plan: &AxisPlan,
    extrapolation: f64,
) -> Vec<f64> {
    let in_len = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0f64; outer * plan.out_len * inner];
    if inner == 0 {
        return out;
    }
    for_row_chunks(&mut out, inner, |first_row, chunk| {
        for (r, row) in chunk.chunks_mut(inner).enumerate() {
            let row_index = first_row + r;
            let (o, j) = (row_index / plan.out_len, row_index % plan.out_len);
            if plan.extrapolated[j] {
                row.fill(extrapolation);
                continue;
            }
            let taps = j * plan.taps..(j + 1) * plan.taps;
            for (&i, &w) in plan.index[taps.clone()].iter().zip(&plan.weight[taps]) {
                if w == 0.0 {
                    continue;
                }
                let src = &data[(o * in_len + i) * inner..][..inner];
                row.iter_mut().zip(src).for_each(|(y, &s)| *y += w * s);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(interpolation: Interpolation, coord: CoordMode) -> Resample {
        Resample {
            op: "Resize",
            interpolation,
            coord,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            policy: AspectPolicy::Stretch,
            target: Target::RoiScalesSizes,
        }
    }

    #[test]
    fn linear_taps_at_integer_coordinates_pick_the_pixel() {
        let plan =
            op(Interpolation::Linear, CoordMode::Asymmetric).plan_axis(4, 8, 2.0, (0.0, 1.0));
        // y = 2 maps to x = 1 exactly: all weight on input 1.
        assert_eq!(&plan.index[4..6], &[0, 1]);
        assert_eq!(&plan.weight[4..6], &[0.0, 1.0]);
        // y = 3 maps to x = 1.5.
        assert_eq!(&plan.index[6..8], &[1, 2]);
        assert_eq!(&plan.weight[6..8], &[0.5, 0.5]);
    }

    #[test]
    fn cubic_weights_sum_to_one() {
        let r = op(Interpolation::Cubic(-0.75), CoordMode::HalfPixel);
        let mut w = [0.0; 4];
        for ratio in [0.1, 0.25, 0.5, 0.9, 1.0] {
            r.weights(ratio, 2.0, &mut w);
            assert!(
                (w.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{ratio}: {w:?}"
            );
        }
    }

    #[test]
    fn nearest_modes_round_as_named() {
        let pick = |mode| {
            op(Interpolation::Nearest(mode), CoordMode::Asymmetric)
                .plan_axis(4, 8, 2.0, (0.0, 1.0))
                .index
        };
        assert_eq!(pick(NearestMode::Floor), vec![0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(pick(NearestMode::Ceil), vec![0, 1, 1, 2, 2, 3, 3, 3]);
        assert_eq!(
            pick(NearestMode::RoundPreferFloor),
            vec![0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(
            pick(NearestMode::RoundPreferCeil),
            vec![0, 1, 1, 2, 2, 3, 3, 3]
        );
    }
}
