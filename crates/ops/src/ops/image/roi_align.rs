//! RoiAlign (opsets 10, 16, 22).

use runnx_ir::Value;

use crate::ops::norm::{FloatKind, Real};
use crate::ops::shape::copy::for_row_chunks;
use crate::ops::shape::dispatch::to_f64_vec;
use crate::ops::shape::ints_input;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    reg.add_versions("", "RoiAlign", &[10, 16, 22], build);
}

/// ONNX `RoiAlign`: pools each region of interest of `X` ([N, C, H, W]) into an
/// `output_height × output_width` grid. Each bin averages (or takes the max of) a
/// `sampling_ratio²` grid of bilinearly interpolated samples (`sampling_ratio = 0`: about one
/// per input pixel). Opset 10 has no `coordinate_transformation_mode` and behaves as
/// `output_half_pixel` (regions in pixel-corner coordinates, at least 1×1); from opset 16 the
/// default `half_pixel` shifts regions by half a pixel and keeps their size as given.
///
/// Max mode takes the maximum of the weighted corner values of each sample, as onnxruntime
/// and the onnx reference do (not the maximum of the interpolated samples). Computed in f64.
struct RoiAlign {
    avg: bool,
    half_pixel: bool,
    output_height: usize,
    output_width: usize,
    sampling_ratio: usize,
    spatial_scale: f64,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let avg = match info.attr_string("mode", "avg")?.as_str() {
        "avg" => true,
        "max" => false,
        other => {
            return Err(OpError::attribute(
                "mode",
                format!("unknown mode '{other}'"),
            ))
        }
    };
    let half_pixel = if info.opset >= 16 {
        match info
            .attr_string("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => true,
            "output_half_pixel" => false,
            other => {
                return Err(OpError::attribute(
                    "coordinate_transformation_mode",
                    format!("unknown mode '{other}'"),
                ))
            }
        }
    } else {
        false
    };
    let positive = |name: &str| -> Result<usize, OpError> {
        let v = info.attr_int(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| OpError::attribute(name, format!("must be positive, got {v}")))
    };
    let sampling_ratio = info.attr_int("sampling_ratio", 0)?;
    Ok(Box::new(RoiAlign {
        avg,
        half_pixel,
        output_height: positive("output_height")?,
        output_width: positive("output_width")?,
        sampling_ratio: usize::try_from(sampling_ratio).map_err(|_| {
            OpError::attribute(
                "sampling_ratio",
                format!("must be >= 0, got {sampling_ratio}"),
            )
        })?,
        spatial_scale: f64::from(info.attr_float("spatial_scale", 1.0)?),
    }))
}

/// A bilinear sample: four plane offsets and their weights.
#[derive(Clone, Copy, Default)]
struct Sample {
    offset: [usize; 4],
    weight: [f64; 4],
}

/// The bilinear sample at (y, x) of an `h × w` plane; all-zero weights outside it (beyond
/// one pixel past the edge), edge pixels repeated within that margin.
fn sample(y: f64, x: f64, h: usize, w: usize) -> Sample {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return Sample::default();
    }
    let axis = |v: f64, len: usize| {
        let v = v.max(0.0);
        let low = v as usize;
        if low >= len - 1 {
            (len - 1, len - 1, 0.0)
        } else {
            (low, low + 1, v - low as f64)
        }
    };
    let (y0, y1, ly) = axis(y, h);
    let (x0, x1, lx) = axis(x, w);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Sample {
        offset: [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1],
        weight: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

impl RoiAlign {
    /// The samples of every bin of one region, bin after bin, and the samples per bin.
    fn region_samples(&self, roi: &[f64], h: usize, w: usize) -> (Vec<Sample>, usize) {
        let shift = if self.half_pixel { 0.5 } else { 0.0 };
        let start_w = roi[0] * self.spatial_scale - shift;
        let start_h = roi[1] * self.spatial_scale - shift;
        let mut roi_w = roi[2] * self.spatial_scale - shift - start_w;
        let mut roi_h = roi[3] * self.spatial_scale - shift - start_h;
        if !self.half_pixel {
            // Malformed regions are forced to 1×1.
            roi_w = roi_w.max(1.0);
            roi_h = roi_h.max(1.0);
        }
        let (oh, ow) = (self.output_height as f64, self.output_width as f64);
        let (bin_h, bin_w) = (roi_h / oh, roi_w / ow);
        let grid = |extent: f64, bins: f64| {
            if self.sampling_ratio > 0 {
                self.sampling_ratio
            } else {
                (extent / bins).ceil().max(0.0) as usize
            }
        };
        let (gh, gw) = (grid(roi_h, oh), grid(roi_w, ow));
        let mut samples = Vec::with_capacity(self.output_height * self.output_width * gh * gw);
        for ph in 0..self.output_height {
            for pw in 0..self.output_width {
                for iy in 0..gh {
                    let y = start_h + ph as f64 * bin_h + (iy as f64 + 0.5) * bin_h / gh as f64;
                    for ix in 0..gw {
                        let x = start_w + pw as f64 * bin_w + (ix as f64 + 0.5) * bin_w / gw as f64;
                        samples.push(sample(y, x, h, w));
                    }
                }
            }
        }
        (samples, gh * gw)
    }
}

impl Kernel for RoiAlign {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let dtype = x.dtype();
        FloatKind::of(dtype, 0)?;
        let rois_t = inputs.tensor(1)?;
        let batch = ints_input(inputs.tensor(2)?, 2)?;
        let &[n, c, h, w] = x.shape() else {
            return Err(OpError::input(
                0,
                format!("expected [N, C, H, W], got {:?}", x.shape()),
            ));
        };
        let regions = batch.len();
        if rois_t.shape() != [regions, 4] {
            return Err(OpError::input(
                1,
                format!(
                    "expected rois of shape [{regions}, 4], got {:?}",
                    rois_t.shape()
                ),
            ));
        }
        let batch = batch
            .iter()
            .map(|&b| {
                usize::try_from(b)
                    .ok()
                    .filter(|&b| b < n)
                    .ok_or_else(|| OpError::input(2, format!("batch index {b} is not in 0..{n}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rois = to_f64_vec(rois_t)?;
        let xs = to_f64_vec(x)?;
        let bins = self.output_height * self.output_width;
        let out_shape = [regions, c, self.output_height, self.output_width];
        let mut out = vec![0.0f64; regions * c * bins];
        if h == 0 || w == 0 || bins == 0 {
            return Ok(vec![Value::Tensor(<f64 as Real>::to_tensor(
                out, dtype, &out_shape,
            )?)]);
        }
        let per_region: Vec<(Vec<Sample>, usize)> = rois
            .chunks(4)
            .map(|roi| self.region_samples(roi, h, w))
            .collect();
        for_row_chunks(&mut out, bins, |first, chunk| {
            for (k, plane) in chunk.chunks_mut(bins).enumerate() {
                let (r, ch) = ((first + k) / c, (first + k) % c);
                let (samples, per_bin) = &per_region[r];
                let src = &xs[(batch[r] * c + ch) * h * w..][..h * w];
                for (bin, y) in plane.iter_mut().enumerate() {
                    let bin_samples = &samples[bin * per_bin..(bin + 1) * per_bin];
                    let values = bin_samples
                        .iter()
                        .map(|s| (0..4).map(move |t| s.weight[t] * src[s.offset[t]]));
                    *y = if self.avg {
                        values.map(|v| v.sum::<f64>()).sum::<f64>() / (*per_bin).max(1) as f64
                    } else {
                        values
                            .map(|v| v.fold(f64::NEG_INFINITY, f64::max))
                            .reduce(f64::max)
                            .unwrap_or(0.0)
                    };
                }
            }
        });
        Ok(vec![Value::Tensor(<f64 as Real>::to_tensor(
            out, dtype, &out_shape,
        )?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_interpolate_inside_and_vanish_outside() {
        let s = sample(0.5, 0.25, 2, 2);
        assert_eq!(s.offset, [0, 1, 2, 3]);
        assert_eq!(s.weight, [0.375, 0.125, 0.375, 0.125]);
        assert_eq!(sample(-2.0, 0.0, 2, 2).weight, [0.0; 4]);
    }
}
