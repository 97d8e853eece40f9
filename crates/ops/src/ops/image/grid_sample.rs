//! GridSample (opsets 16, 20, 22) and AffineGrid (opset 20).
//!
//! GridSample reads, for every output position, a normalised coordinate in [-1, 1] per spatial
//! axis (the grid's last axis lists them innermost-first: x for width, then y, then z) and
//! samples every channel of the matching batch item there. The kernel first turns each
//! position into taps (flat input offsets and weights, shared by all channels), then applies
//! them plane by plane. Coordinates are computed in the grid's float type (f32 for float,
//! float16 and bfloat16, f64 for double), like the onnx reference, so nearest-mode ties round
//! the same way; the weighted sums are accumulated in f64.

use runnx_ir::{Tensor, Value};

use super::{concat_default, from_f64_rounded};
use crate::ops::norm::{FloatKind, Real};
use crate::ops::shape::copy::for_row_chunks;
use crate::ops::shape::dispatch::{to_f64_vec, with_num_type, Num, NumFn};
use crate::ops::shape::ints_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    reg.add_versions("", "GridSample", &[16, 20, 22], build_grid_sample);
    reg.add("", "AffineGrid", 20, build_affine_grid);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SampleMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// ONNX `GridSample`. Opset 16 names the modes `bilinear`/`bicubic` and takes 4-D inputs only;
/// opset 20 renames them `linear`/`cubic` and generalises to any number of spatial axes.
struct GridSample {
    mode: SampleMode,
    padding: Padding,
    align_corners: bool,
    opset: i64,
}

fn build_grid_sample(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let v16 = info.opset < 20;
    let default_mode = if v16 { "bilinear" } else { "linear" };
    let mode = match (info.attr_string("mode", default_mode)?.as_str(), v16) {
        ("nearest", _) => SampleMode::Nearest,
        ("bilinear", true) | ("linear", false) => SampleMode::Linear,
        ("bicubic", true) | ("cubic", false) => SampleMode::Cubic,
        (other, _) => {
            return Err(OpError::attribute(
                "mode",
                format!("unknown mode '{other}' at opset {}", info.opset),
            ))
        }
    };
    let padding = match info.attr_string("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => {
            return Err(OpError::attribute(
                "padding_mode",
                format!("unknown mode '{other}'"),
            ))
        }
    };
    Ok(Box::new(GridSample {
        mode,
        padding,
        align_corners: info.attr_int("align_corners", 0)? != 0,
        opset: info.opset,
    }))
}

/// Per output position of one batch item, `taps` flat offsets into an input plane (`None`:
/// outside the input under zero padding) and their weights.
struct Taps {
    taps: usize,
    offset: Vec<Option<usize>>,
    weight: Vec<f64>,
}

impl GridSample {
    /// Input coordinate of normalised coordinate `g` along an axis of `len` pixels.
    fn denormalize<R: Real>(&self, g: R, len: usize) -> R {
        let (one, two) = (R::one(), R::of(2.0));
        let len = R::from_usize(len).unwrap_or_else(R::nan);
        if self.align_corners {
            (g + one) / two * (len - one)
        } else {
            ((g + one) * len - one) / two
        }
    }

    /// The coordinate range the input covers: pixel centres with `align_corners`, pixel
    /// edges without.
    fn bounds(&self, len: usize) -> (f64, f64) {
        if self.align_corners {
            (0.0, len as f64 - 1.0)
        } else {
            (-0.5, len as f64 - 0.5)
        }
    }

    /// The input index for integer position `i` along an axis, or `None` when it falls
    /// outside under zero padding.
    fn pixel(&self, i: i64, len: usize) -> Option<usize> {
        let last = len as i64 - 1;
        match self.padding {
            Padding::Zeros => (0..len as i64).contains(&i).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, last) as usize),
            Padding::Reflection => {
                let (lo, hi) = self.bounds(len);
                Some((reflect(i as f64, lo, hi) as i64).clamp(0, last) as usize)
            }
        }
    }

    /// The taps along one axis for coordinate `g`: (index or `None`, weight) pairs.
    fn axis_taps<R: Real>(&self, g: R, len: usize, out: &mut Vec<(Option<usize>, f64)>) {
        out.clear();
        let mut x = self.denormalize(g, len).to_f64().unwrap_or(f64::NAN);
        if self.mode == SampleMode::Nearest {
            x = x.round_ties_even();
        }
        let (lo, hi) = self.bounds(len);
        if x < lo || x > hi {
            match self.padding {
                Padding::Zeros => {}
                Padding::Border => x = x.clamp(0.0, len as f64 - 1.0),
                Padding::Reflection => x = reflect(x, lo, hi),
            }
        }
        if !x.is_finite() {
            // A NaN coordinate samples nothing.
            let taps = match self.mode {
                SampleMode::Nearest => 1,
                SampleMode::Linear => 2,
                SampleMode::Cubic => 4,
            };
            out.extend(std::iter::repeat_n((None, 0.0), taps));
            return;
        }
        match self.mode {
            SampleMode::Nearest => out.push((self.pixel(x as i64, len), 1.0)),
            SampleMode::Linear => {
                let x0 = x.floor();
                let t = x - x0;
                out.push((self.pixel(x0 as i64, len), 1.0 - t));
                out.push((self.pixel(x0 as i64 + 1, len), t));
            }
            SampleMode::Cubic => {
                let x0 = x.floor();
                let t = x - x0;
                let w = cubic_weights(t);
                for (k, &wk) in w.iter().enumerate() {
                    out.push((self.pixel(x0 as i64 - 1 + k as i64, len), wk));
                }
            }
        }
    }

    /// The taps of every output position of batch item `n`.
    fn taps<R: Real>(&self, grid: &[R], positions: usize, dims: &[usize]) -> Taps {
        let r = dims.len();
        let per_axis: usize = match self.mode {
            SampleMode::Nearest => 1,
            SampleMode::Linear => 2,
            SampleMode::Cubic => 4,
        };
        let taps = per_axis.pow(r as u32);
        let mut offset = Vec::with_capacity(positions * taps);
        let mut weight = Vec::with_capacity(positions * taps);
        let mut axis: Vec<Vec<(Option<usize>, f64)>> = vec![Vec::with_capacity(4); r];
        let strides = runnx_ir::strides_of(dims);
        for p in 0..positions {
            let coords = &grid[p * r..(p + 1) * r];
            for (a, taps_a) in axis.iter_mut().enumerate() {
                // The grid lists coordinates innermost axis first.
                self.axis_taps(coords[r - 1 - a], dims[a], taps_a);
            }
            // The product of the per-axis taps, odometer order.
            for t in 0..taps {
                let (mut rest, mut off, mut w) = (t, Some(0usize), 1.0f64);
                for a in (0..r).rev() {
                    let (i, wa) = axis[a][rest % per_axis];
                    rest /= per_axis;
                    off = off.zip(i).map(|(o, i)| o + i * strides[a]);
                    w *= wa;
                }
                offset.push(off);
                weight.push(w);
            }
        }
        Taps {
            taps,
            offset,
            weight,
        }
    }

    fn run_typed<R: Real>(&self, x: &Tensor, grid: &Tensor) -> Result<Tensor, OpError> {
        let (xs, gs) = (x.shape(), grid.shape());
        let r = xs.len().saturating_sub(2);
        if xs.len() < 3 || gs.len() != xs.len() || gs[0] != xs[0] || gs[gs.len() - 1] != r {
            return Err(OpError::invalid(format!(
                "GridSample expects X [N, C, D1..Dr] and grid [N, O1..Or, r], got {xs:?} and {gs:?}"
            )));
        }
        if self.opset < 20 && r != 2 {
            return Err(OpError::input(0, "GridSample-16 takes 4-D inputs only"));
        }
        let (n, c, dims) = (xs[0], xs[1], &xs[2..]);
        let positions: usize = gs[1..gs.len() - 1].iter().product();
        let plane: usize = dims.iter().product();
        let mut out_shape = vec![n, c];
        out_shape.extend_from_slice(&gs[1..gs.len() - 1]);
        let g = R::read(grid, 1)?;
        let per_item: Vec<Taps> = (0..n)
            .map(|b| {
                self.taps(
                    &g[b * positions * r..(b + 1) * positions * r],
                    positions,
                    dims,
                )
            })
            .collect();
        if self.mode == SampleMode::Nearest {
            // A pure gather, for every element type: out-of-range taps read an appended zero.
            let (data, zero) = concat_default(x.data());
            let mut index = vec![0usize; n * c * positions];
            for_row_chunks(&mut index, positions.max(1), |first, chunk| {
                for (k, row) in chunk.chunks_mut(positions.max(1)).enumerate() {
                    let nc = first + k;
                    let (b, base) = (nc / c, nc * plane);
                    for (o, off) in row.iter_mut().zip(&per_item[b].offset) {
                        *o = off.map_or(zero, |i| base + i);
                    }
                }
            });
            return Ok(Tensor::new(&out_shape, data.gather(&index))?);
        }
        with_num_type(
            x.dtype(),
            Apply {
                x,
                per_item: &per_item,
                out_shape: &out_shape,
                plane,
                channels: c,
            },
        )
        .map_err(|_| {
            OpError::input(
                0,
                format!(
                    "interpolating GridSample needs a numeric X, got {}",
                    x.dtype()
                ),
            )
        })?
    }
}

/// The weighted sums of the taps over every channel plane.
struct Apply<'a> {
    x: &'a Tensor,
    per_item: &'a [Taps],
    out_shape: &'a [usize],
    plane: usize,
    channels: usize,
}

impl NumFn for Apply<'_> {
    type Out = Result<Tensor, OpError>;
    fn call<T: Num>(self) -> Result<Tensor, OpError> {
        let x = to_f64_vec(self.x)?;
        let positions: usize = self.out_shape[2..].iter().product();
        let mut out = vec![T::ZERO; self.out_shape.iter().product()];
        for_row_chunks(&mut out, positions.max(1), |first, chunk| {
            for (k, row) in chunk.chunks_mut(positions.max(1)).enumerate() {
                let nc = first + k;
                let taps = &self.per_item[nc / self.channels];
                let src = &x[nc * self.plane..][..self.plane];
                for (p, y) in row.iter_mut().enumerate() {
                    let range = p * taps.taps..(p + 1) * taps.taps;
                    let sum: f64 = taps.offset[range.clone()]
                        .iter()
                        .zip(&taps.weight[range])
                        .filter_map(|(o, &w)| o.map(|o| w * src[o]))
                        .sum();
                    *y = from_f64_rounded::<T>(sum);
                }
            }
        });
        Ok(Tensor::from_vec(self.out_shape, out)?)
    }
}

impl Kernel for GridSample {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, grid) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let y = match FloatKind::of(grid.dtype(), 1)? {
            FloatKind::F32 => self.run_typed::<f32>(x, grid)?,
            FloatKind::F64 => self.run_typed::<f64>(x, grid)?,
        };
        Ok(vec![Value::Tensor(y)])
    }
}

/// Reflects `x` at the borders `lo` and `hi` until it lies between them.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let fold = |d: f64| {
        let n = (d / range).trunc();
        (d - n * range, n % 2.0 == 0.0)
    };
    if x < lo {
        let (r, even) = fold(lo - x);
        if even {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let (r, even) = fold(x - hi);
        if even {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys' cubic convolution weights (a = -0.75, as PyTorch) of the taps at -1, 0, 1, 2 for a
/// coordinate `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// ONNX `AffineGrid`: the sampling grid of an affine transform `theta` ([N, 2, 3] or
/// [N, 3, 4]) over an output of `size` ([N, C, H, W] or [N, C, D, H, W]), as GridSample reads
/// it. Computed in f64 and rounded to theta's type.
struct AffineGrid {
    align_corners: bool,
}

fn build_affine_grid(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(AffineGrid {
        align_corners: info.attr_int("align_corners", 0)? != 0,
    }))
}

impl AffineGrid {
    /// Normalised coordinate of pixel `i` of `len`: the pixel centres spread over [-1, 1]
    /// (corners included with `align_corners`).
    fn base(&self, i: usize, len: usize) -> f64 {
        if self.align_corners {
            if len <= 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (len - 1) as f64
            }
        } else {
            -1.0 + (2.0 * i as f64 + 1.0) / len as f64
        }
    }
}

impl Kernel for AffineGrid {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let theta = inputs.tensor(0)?;
        FloatKind::of(theta.dtype(), 0)?;
        let size = ints_input(inputs.tensor(1)?, 1)?;
        let spatial = match size.len() {
            4 | 5 => size.len() - 2,
            other => {
                return Err(OpError::input(
                    1,
                    format!("size must have 4 or 5 values, got {other}"),
                ))
            }
        };
        let dims = size
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| OpError::input(1, format!("size {size:?} has a negative value")))?;
        let n = dims[0];
        let (rows, cols) = (spatial, spatial + 1);
        if theta.shape() != [n, rows, cols] {
            return Err(OpError::input(
                0,
                format!(
                    "theta must be [{n}, {rows}, {cols}] for size {size:?}, got {:?}",
                    theta.shape()
                ),
            ));
        }
        let t = to_f64_vec(theta)?;
        let out_dims = &dims[2..];
        let positions: usize = out_dims.iter().product();
        let mut out = Vec::with_capacity(n * positions * spatial);
        let mut homogeneous = vec![1.0f64; cols];
        for b in 0..n {
            let th = &t[b * rows * cols..(b + 1) * rows * cols];
            for p in 0..positions {
                // (x, y[, z], 1): x runs along the last axis.
                let mut rest = p;
                for a in (0..spatial).rev() {
                    let i = rest % out_dims[a];
                    rest /= out_dims[a];
                    homogeneous[spatial - 1 - a] = self.base(i, out_dims[a]);
                }
                for row in th.chunks(cols) {
                    out.push(
                        row.iter()
                            .zip(&homogeneous)
                            .map(|(a, b)| a * b)
                            .sum::<f64>(),
                    );
                }
            }
        }
        let mut shape = vec![n];
        shape.extend_from_slice(out_dims);
        shape.push(spatial);
        let y = <f64 as Real>::to_tensor(out, theta.dtype(), &shape)?;
        Ok(vec![Value::Tensor(y)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_folds_back_and_forth() {
        assert_eq!(reflect(-1.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(3.0, -0.5, 2.5), 2.0);
        assert_eq!(reflect(6.0, -0.5, 2.5), -0.5 + 0.5);
        assert_eq!(reflect(1.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn cubic_weights_interpolate() {
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        let s: f64 = cubic_weights(0.3).iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
    }
}
