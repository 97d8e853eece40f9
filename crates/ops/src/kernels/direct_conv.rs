//! Direct 2-D convolution (AVX-512) for filters with few taps per output (`channels · kh · kw` up to
//! [`MAX_TAPS`]) and unit column stride, such as a first conv on a 1-channel image (MNIST's
//! 32-channel 3x3 conv has 9 taps).
//!
//! With so short a reduction the im2col + GEMM route spends most of its time around the
//! arithmetic: building and packing a 9-row matrix, zeroing, and a second pass for bias and
//! activation. Here a block of [`CHANNEL_BLOCK`] output channels x [`LANES`] positions of one
//! output row is accumulated in registers from the taps' shifted input rows, and stored once
//! with bias, residual and activation applied.

use super::gemm::Activation;

/// The most taps (input channels x kernel positions) this path takes.
pub const MAX_TAPS: usize = 32;
/// Output positions per accumulator: one AVX-512 vector, two AVX2 ones.
const LANES: usize = 16;
/// Output channels accumulated together: each input vector loaded serves this many FMAs.
const CHANNEL_BLOCK: usize = 8;

/// The geometry of one group of one batch item.
#[derive(Clone, Debug)]
pub struct Geometry {
    pub channels: usize,
    pub input: [usize; 2],
    pub output: [usize; 2],
    pub kernel: [usize; 2],
    /// Row stride; the column stride is 1.
    pub row_stride: usize,
    pub dilations: [usize; 2],
    /// Top and left padding (the bottom and right ones follow from the output size).
    pub pads_begin: [usize; 2],
}

impl Geometry {
    pub fn taps(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// The zero-padded input plane's (rows, columns): every tap of every output position lies
    /// inside it, and every `LANES`-wide load from a tap's row too.
    fn padded(&self) -> (usize, usize) {
        let rows =
            (self.output[0] - 1) * self.row_stride + (self.kernel[0] - 1) * self.dilations[0] + 1;
        let cols =
            self.output[1].next_multiple_of(LANES) + (self.kernel[1] - 1) * self.dilations[1];
        (rows, cols)
    }
}

/// The filter regrouped for [`conv2d`]: per block of [`CHANNEL_BLOCK`] outputs, per tap, the
/// block's weights (zero for the missing outputs of the last block).
pub fn pack_filter(w: &[f32], outputs: usize, taps: usize) -> Vec<f32> {
    let blocks = outputs.div_ceil(CHANNEL_BLOCK);
    let mut packed = vec![0.0; blocks * taps * CHANNEL_BLOCK];
    for m in 0..outputs {
        let (block, lane) = (m / CHANNEL_BLOCK, m % CHANNEL_BLOCK);
        for t in 0..taps {
            packed[(block * taps + t) * CHANNEL_BLOCK + lane] = w[m * taps + t];
        }
    }
    packed
}

/// `y = activation(conv(x, w) + bias + residual)` for one group of one batch item: `x` is
/// `[channels, in_h, in_w]`, `packed` from [`pack_filter`], `y` (and `residual`) `[outputs,
/// out_h, out_w]`.
pub fn conv2d(
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    residual: Option<&[f32]>,
    activation: Activation<f32>,
    y: &mut [f32],
) {
    let taps = g.taps();
    let outputs = y.len() / (g.output[0] * g.output[1]).max(1);
    assert!(
        taps <= MAX_TAPS && packed.len() >= outputs.div_ceil(CHANNEL_BLOCK) * taps * CHANNEL_BLOCK
    );
    let (rows, cols) = g.padded();
    let mut plane = vec![0.0f32; g.channels * rows * cols];
    for c in 0..g.channels {
        for iy in 0..g.input[0] {
            let py = iy + g.pads_begin[0];
            if py >= rows {
                break;
            }
            let src = &x[(c * g.input[0] + iy) * g.input[1]..][..g.input[1]];
            let dst = &mut plane[(c * rows + py) * cols..][..cols];
            let n = src.len().min(cols.saturating_sub(g.pads_begin[1]));
            dst[g.pads_begin[1]..][..n].copy_from_slice(&src[..n]);
        }
    }
    // Each tap's offset in the padded input, relative to an output row's first sample.
    let mut offsets = [0usize; MAX_TAPS];
    let mut t = 0;
    for c in 0..g.channels {
        for ky in 0..g.kernel[0] {
            for kx in 0..g.kernel[1] {
                offsets[t] = (c * rows + ky * g.dilations[0]) * cols + kx * g.dilations[1];
                t += 1;
            }
        }
    }
    let rows_out = RowsOut {
        plane: &plane,
        row_step: g.row_stride * cols,
        offsets: &offsets[..taps],
        packed,
        bias,
        residual,
        activation,
        out_rows: g.output[0],
        out_cols: g.output[1],
    };
    accumulate(&rows_out, y);
}

/// What [`accumulate_body`] reads.
struct RowsOut<'a> {
    plane: &'a [f32],
    /// How far the input moves from one output row to the next.
    row_step: usize,
    offsets: &'a [usize],
    packed: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    activation: Activation<f32>,
    out_rows: usize,
    out_cols: usize,
}

/// Whether this CPU runs [`conv2d`] (its kernel is written for AVX-512; elsewhere convs take
/// the im2col + GEMM route).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn accumulate(_r: &RowsOut<'_>, _y: &mut [f32]) {
    unreachable!("direct_conv::available() is false off x86-64");
}

#[cfg(target_arch = "x86_64")]
fn accumulate(r: &RowsOut<'_>, y: &mut [f32]) {
    assert!(available(), "direct_conv needs AVX-512");
    let out_plane = r.out_rows * r.out_cols;
    let outputs = y.len() / out_plane.max(1);
    let taps = r.offsets.len();
    // Every load stays inside the padded plane: the last output row's taps end at most
    // `(cols rounded to LANES) + (kw - 1)·dilation` into their row (see `Geometry::padded`).
    let last_row = (r.out_rows - 1) * r.row_step;
    let widest = r.offsets.iter().max().copied().unwrap_or(0) + r.out_cols.next_multiple_of(LANES);
    assert!(last_row + widest <= r.plane.len());
    assert!(r.packed.len() >= outputs.div_ceil(CHANNEL_BLOCK) * taps * CHANNEL_BLOCK);
    assert!(r.bias.is_none_or(|b| b.len() >= outputs));
    assert!(r.residual.is_none_or(|z| z.len() >= y.len()));
    // SAFETY: AVX-512 is present (asserted); the loads are in bounds (asserted above), and the
    // stores and residual loads are masked to the `n` positions of `y`'s row that exist.
    unsafe { accumulate_avx512(r, y, outputs) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_avx512(r: &RowsOut<'_>, y: &mut [f32], outputs: usize) {
    use std::arch::x86_64::*;
    let out_plane = r.out_rows * r.out_cols;
    let taps = r.offsets.len();
    let plane = r.plane.as_ptr();
    for block in 0..outputs.div_ceil(CHANNEL_BLOCK) {
        let weights = r.packed.as_ptr().add(block * taps * CHANNEL_BLOCK);
        let first = block * CHANNEL_BLOCK;
        let count = CHANNEL_BLOCK.min(outputs - first);
        let mut init = [0.0f32; CHANNEL_BLOCK];
        if let Some(bias) = r.bias {
            init[..count].copy_from_slice(&bias[first..first + count]);
        }
        for oy in 0..r.out_rows {
            let row = plane.add(oy * r.row_step);
            for ox in (0..r.out_cols).step_by(LANES) {
                let mut acc = [_mm512_setzero_ps(); CHANNEL_BLOCK];
                for (a, &b) in acc.iter_mut().zip(&init) {
                    *a = _mm512_set1_ps(b);
                }
                for (t, &offset) in r.offsets.iter().enumerate() {
                    let xs = _mm512_loadu_ps(row.add(offset + ox));
                    let ws = weights.add(t * CHANNEL_BLOCK);
                    for (m, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(*ws.add(m)), xs, *a);
                    }
                }
                let n = LANES.min(r.out_cols - ox);
                let mask: __mmask16 = if n == LANES { !0 } else { (1u16 << n) - 1 };
                for (m, &a) in acc.iter().enumerate().take(count) {
                    let at = (first + m) * out_plane + oy * r.out_cols + ox;
                    let mut v = a;
                    if let Some(z) = r.residual {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, z.as_ptr().add(at)));
                    }
                    // max/min return their second operand when one is NaN: NaN stays NaN,
                    // as in `Activation::apply`.
                    v = match r.activation {
                        Activation::Identity => v,
                        Activation::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
                        Activation::Clip { min, max } => _mm512_min_ps(
                            _mm512_set1_ps(max),
                            _mm512_max_ps(_mm512_set1_ps(min), v),
                        ),
                        Activation::LeakyRelu { .. } => {
                            let mut lanes = [0.0f32; LANES];
                            _mm512_storeu_ps(lanes.as_mut_ptr(), v);
                            lanes.iter_mut().for_each(|l| *l = r.activation.apply(*l));
                            _mm512_loadu_ps(lanes.as_ptr())
                        }
                    };
                    _mm512_mask_storeu_ps(y.as_mut_ptr().add(at), mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time, in f64.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], g: &Geometry, outputs: usize) -> Vec<f32> {
        let [oh, ow] = g.output;
        let mut y = vec![0.0; outputs * oh * ow];
        for m in 0..outputs {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = f64::from(bias[m]);
                    for c in 0..g.channels {
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.row_stride + ky * g.dilations[0]) as isize
                                    - g.pads_begin[0] as isize;
                                let ix =
                                    (ox + kx * g.dilations[1]) as isize - g.pads_begin[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.input[0] as isize
                                    || ix >= g.input[1] as isize
                                {
                                    continue;
                                }
                                let xv =
                                    x[(c * g.input[0] + iy as usize) * g.input[1] + ix as usize];
                                let wv =
                                    w[((m * g.channels + c) * g.kernel[0] + ky) * g.kernel[1] + kx];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    y[(m * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition() {
        // (channels, input, kernel, row stride, dilations, pads begin/end, outputs)
        let cases: [(
            usize,
            [usize; 2],
            [usize; 2],
            usize,
            [usize; 2],
            [usize; 4],
            usize,
        ); 5] = [
            (1, [28, 28], [3, 3], 1, [1, 1], [0, 0, 0, 0], 32), // MNIST's first conv
            (3, [9, 20], [3, 3], 1, [1, 1], [1, 1, 1, 1], 13),  // RGB, padded, a partial block
            (2, [7, 33], [2, 4], 2, [1, 1], [0, 2, 1, 0], 8),   // row stride 2, uneven pads
            (1, [10, 10], [3, 3], 1, [2, 2], [2, 2, 2, 2], 5),  // dilated
            (4, [5, 17], [1, 5], 1, [1, 1], [0, 0, 0, 0], 3),   // 1x5
        ];
        for (channels, input, kernel, row_stride, dilations, pads, outputs) in cases {
            let out_dim = |i: usize, d: usize, s: usize, k: usize, p: usize| {
                (i + p - (d * (k - 1) + 1)) / s + 1
            };
            let g = Geometry {
                channels,
                input,
                output: [
                    out_dim(
                        input[0],
                        dilations[0],
                        row_stride,
                        kernel[0],
                        pads[0] + pads[2],
                    ),
                    out_dim(input[1], dilations[1], 1, kernel[1], pads[1] + pads[3]),
                ],
                kernel,
                row_stride,
                dilations,
                pads_begin: [pads[0], pads[1]],
            };
            let taps = g.taps();
            let x: Vec<f32> = (0..channels * input[0] * input[1])
                .map(|i| ((i * 37) % 17) as f32 * 0.25 - 2.0)
                .collect();
            let w: Vec<f32> = (0..outputs * taps)
                .map(|i| ((i * 11) % 7) as f32 * 0.5 - 1.5)
                .collect();
            let bias: Vec<f32> = (0..outputs).map(|i| i as f32 * 0.1).collect();
            let want = reference(&x, &w, &bias, &g, outputs);
            let packed = pack_filter(&w, outputs, taps);
            let mut y = vec![f32::NAN; want.len()];
            conv2d(
                &x,
                &packed,
                Some(&bias),
                &g,
                None,
                Activation::Identity,
                &mut y,
            );
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?}: at {i} {a} vs {b}"
                );
            }
            // Residual and Relu.
            let z: Vec<f32> = (0..want.len()).map(|i| (i % 5) as f32 - 2.0).collect();
            conv2d(
                &x,
                &packed,
                Some(&bias),
                &g,
                Some(&z),
                Activation::Relu,
                &mut y,
            );
            for (i, ((a, b), z)) in y.iter().zip(&want).zip(&z).enumerate() {
                let b = (b + z).max(0.0);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?}: at {i} {a} vs {b}"
                );
            }
        }
    }
}
