//! Direct 2-D convolution (AVX-512): output positions in vector lanes, output channels in
//! registers, the taps summed straight from a zero-padded copy of the input.
//!
//! The im2col + GEMM route builds and packs a `taps x positions` matrix before any
//! arithmetic. When each of its elements serves few FMAs (few output channels, as in a first
//! conv: ResNet's stem has 64, MNIST's 32), or when the reduction is short (MNIST's first conv
//! has 9 taps), that packing, the zeroing and the separate bias/activation pass cost as much as
//! the products. Here a block of [`CHANNEL_BLOCK`] output channels x up to [`BLOCK_LANES`]
//! positions of one output row is accumulated in registers and stored once, with bias,
//! residual and activation applied.
//!
//! A column stride is handled by splitting each padded input row into phases (column mod
//! stride): the samples of one tap along an output row are then contiguous, one vector load.

use rayon::prelude::*;

use super::buffers::{f32_buffer, recycle};
use super::gemm::Activation;
use super::padded::PaddedLayout;

/// Output positions per vector.
const LANES: usize = 16;
/// Output positions per register block: two vectors.
const BLOCK_LANES: usize = 2 * LANES;
/// Output channels accumulated together: each input vector loaded serves this many FMAs.
pub const CHANNEL_BLOCK: usize = 8;

/// The geometry of one group of one batch item.
#[derive(Clone, Debug)]
pub struct Geometry {
    pub channels: usize,
    pub input: [usize; 2],
    pub output: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Top and left padding (the bottom and right ones follow from the output size).
    pub pads_begin: [usize; 2],
}

impl Geometry {
    pub fn taps(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    fn layout(&self) -> PaddedLayout {
        let [sy, sx] = self.strides;
        let rows = (self.output[0] - 1) * sy + (self.kernel[0] - 1) * self.dilations[0] + 1;
        // Every block's loads (whole blocks, past the row's last output) stay in the row, and
        // every sampled input column has a place.
        let furthest_tap = (self.kernel[1] - 1) * self.dilations[1] / sx;
        let sampled = (self.output[1] - 1) * sx + (self.kernel[1] - 1) * self.dilations[1] + 1;
        let phase_width =
            (furthest_tap + self.output[1].next_multiple_of(BLOCK_LANES)).max(sampled.div_ceil(sx));
        PaddedLayout {
            rows,
            stride: sx,
            phase_width,
        }
    }

    /// Each tap's offset in the padded input, relative to an output row's first sample, in the
    /// packed filter's tap order (channel, kernel row, kernel column).
    fn tap_offsets(&self, layout: &PaddedLayout) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.taps());
        for c in 0..self.channels {
            for ky in 0..self.kernel[0] {
                for kx in 0..self.kernel[1] {
                    let column = kx * self.dilations[1];
                    offsets.push(
                        (c * layout.rows + ky * self.dilations[0]) * layout.row_len()
                            + layout.position(column),
                    );
                }
            }
        }
        offsets
    }

    /// `x` (`[channels, in_h, in_w]`) zero-padded and phase-split as `layout` says, in a
    /// recycled buffer (fresh pages cost more than the copy).
    fn pad_input(&self, x: &[f32], layout: &PaddedLayout) -> Vec<f32> {
        let mut plane = f32_buffer(self.channels * layout.plane_len());
        layout.fill(x, self.input, self.pads_begin, 0.0, &mut plane);
        plane
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
/// out_h, out_w]`. With `pooled`, a 2x2 stride-2 max pool (floor mode) follows the
/// activation: `y` is `[outputs, out_h / 2, out_w / 2]`, and there is no residual. With
/// `split`, blocks of output channels run as parallel tasks.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    residual: Option<&[f32]>,
    activation: Activation<f32>,
    pooled: bool,
    y: &mut [f32],
    split: bool,
) {
    let taps = g.taps();
    assert!(
        !(pooled && residual.is_some()),
        "a pooled conv takes no residual"
    );
    let y_plane = if pooled {
        (g.output[0] / 2) * (g.output[1] / 2)
    } else {
        g.output[0] * g.output[1]
    };
    let outputs = y.len() / y_plane.max(1);
    assert!(packed.len() >= outputs.div_ceil(CHANNEL_BLOCK) * taps * CHANNEL_BLOCK);
    assert!(x.len() >= g.channels * g.input[0] * g.input[1]);
    let layout = g.layout();
    let plane = g.pad_input(x, &layout);
    let offsets = g.tap_offsets(&layout);
    let rows_out = RowsOut {
        plane: &plane,
        row_step: g.strides[0] * layout.row_len(),
        offsets: &offsets,
        packed,
        bias,
        residual,
        activation,
        pooled,
        out_rows: g.output[0],
        out_cols: g.output[1],
    };
    let out_plane = g.output[0] * g.output[1];
    let blocks = outputs.div_ceil(CHANNEL_BLOCK);
    let threads = rayon::current_num_threads();
    if !split || threads < 2 || blocks < 2 || y_plane == 0 {
        accumulate(&rows_out, y);
        recycle(plane);
        return;
    }
    // Two tasks per thread even out the last, partial block.
    let per_task = blocks.div_ceil(2 * threads) * CHANNEL_BLOCK;
    y.par_chunks_mut(per_task * y_plane)
        .enumerate()
        .for_each(|(task, y)| {
            let first = task * per_task;
            let part = RowsOut {
                packed: &packed[first * taps..],
                bias: bias.map(|b| &b[first..]),
                residual: residual.map(|z| &z[first * out_plane..][..y.len()]),
                ..rows_out
            };
            accumulate(&part, y);
        });
    recycle(plane);
}

/// What [`accumulate_avx512`] reads.
#[derive(Clone, Copy)]
struct RowsOut<'a> {
    plane: &'a [f32],
    /// How far the input moves from one output row to the next.
    row_step: usize,
    offsets: &'a [usize],
    packed: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    activation: Activation<f32>,
    /// Whether a 2x2 stride-2 max pool follows (see [`conv2d`]).
    pooled: bool,
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
    let y_plane = if r.pooled {
        (r.out_rows / 2) * (r.out_cols / 2)
    } else {
        out_plane
    };
    let outputs = y.len() / y_plane.max(1);
    let taps = r.offsets.len();
    // Every load stays inside the padded plane: a tap's loads for the last output row end at
    // most a whole number of blocks past its first sample (see `Geometry::layout`).
    let last_row = r.out_rows.saturating_sub(1) * r.row_step;
    let widest =
        r.offsets.iter().max().copied().unwrap_or(0) + r.out_cols.next_multiple_of(BLOCK_LANES);
    assert!(out_plane == 0 || last_row + widest <= r.plane.len());
    assert!(r.packed.len() >= outputs.div_ceil(CHANNEL_BLOCK) * taps * CHANNEL_BLOCK);
    assert!(r.bias.is_none_or(|b| b.len() >= outputs));
    assert!(r.residual.is_none_or(|z| !r.pooled && z.len() >= y.len()));
    // SAFETY: AVX-512 is present (asserted); the loads are in bounds (asserted above: the
    // pooled kernel reads a subset of the rows and columns the other one reads), and the
    // stores and residual loads are masked to the positions of `y`'s row that exist.
    unsafe {
        if r.pooled {
            accumulate_pooled_avx512(r, y, outputs);
        } else {
            accumulate_avx512(r, y, outputs);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_avx512(r: &RowsOut<'_>, y: &mut [f32], outputs: usize) {
    let out_plane = r.out_rows * r.out_cols;
    let taps = r.offsets.len();
    for block in 0..outputs.div_ceil(CHANNEL_BLOCK) {
        let first = block * CHANNEL_BLOCK;
        let mut init = [0.0f32; CHANNEL_BLOCK];
        if let Some(bias) = r.bias {
            let count = CHANNEL_BLOCK.min(outputs - first);
            init[..count].copy_from_slice(&bias[first..first + count]);
        }
        let out = OutBlock {
            first,
            count: CHANNEL_BLOCK.min(outputs - first),
            out_plane,
            init,
        };
        let weights = r.packed.as_ptr().add(block * taps * CHANNEL_BLOCK);
        for oy in 0..r.out_rows {
            let row = r.plane.as_ptr().add(oy * r.row_step);
            let at = oy * r.out_cols;
            let mut ox = 0;
            while ox < r.out_cols {
                let left = r.out_cols - ox;
                if left > LANES {
                    block_avx512::<2>(r, &out, weights, row.add(ox), at + ox, left, y);
                } else {
                    block_avx512::<1>(r, &out, weights, row.add(ox), at + ox, left, y);
                }
                ox += BLOCK_LANES;
            }
        }
    }
}

/// The output channels one register block writes.
struct OutBlock {
    first: usize,
    count: usize,
    out_plane: usize,
    init: [f32; CHANNEL_BLOCK],
}

/// One register block: [`CHANNEL_BLOCK`] channels x `V` vectors of positions starting at
/// `row` (the input) and `at` (within each output plane), of which `left` exist.
///
/// # Safety
/// AVX-512 is present; `row` plus every tap offset plus `V·LANES` lies in the padded plane,
/// `weights` holds `taps·CHANNEL_BLOCK` values, and `y` has the block's `count` channels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512<const V: usize>(
    r: &RowsOut<'_>,
    out: &OutBlock,
    weights: *const f32,
    row: *const f32,
    at: usize,
    left: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; CHANNEL_BLOCK];
    for (a, &b) in acc.iter_mut().zip(&out.init) {
        *a = [_mm512_set1_ps(b); V];
    }
    for (t, &offset) in r.offsets.iter().enumerate() {
        let source = row.add(offset);
        let xs: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(source.add(v * LANES)));
        let ws = weights.add(t * CHANNEL_BLOCK);
        for (m, a) in acc.iter_mut().enumerate() {
            let w = _mm512_set1_ps(*ws.add(m));
            for v in 0..V {
                a[v] = _mm512_fmadd_ps(w, xs[v], a[v]);
            }
        }
    }
    let masks: [__mmask16; V] = std::array::from_fn(|v| {
        let n = left.saturating_sub(v * LANES).min(LANES);
        if n == LANES {
            !0
        } else {
            (1u16 << n) - 1
        }
    });
    for (m, a) in acc.iter().enumerate().take(out.count) {
        for v in 0..V {
            let at = (out.first + m) * out.out_plane + at + v * LANES;
            let mut value = a[v];
            if let Some(z) = r.residual {
                value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(masks[v], z.as_ptr().add(at)));
            }
            value = activate(r.activation, value);
            _mm512_mask_storeu_ps(y.as_mut_ptr().add(at), masks[v], value);
        }
    }
}

/// `activation` on a vector. max/min return their second operand when one is NaN: NaN stays
/// NaN, as in `Activation::apply`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn activate(
    activation: Activation<f32>,
    value: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    match activation {
        Activation::Identity => value,
        Activation::Relu => _mm512_max_ps(_mm512_setzero_ps(), value),
        Activation::Clip { min, max } => _mm512_min_ps(
            _mm512_set1_ps(max),
            _mm512_max_ps(_mm512_set1_ps(min), value),
        ),
        Activation::LeakyRelu { .. } => {
            let mut lanes = [0.0f32; LANES];
            _mm512_storeu_ps(lanes.as_mut_ptr(), value);
            lanes.iter_mut().for_each(|l| *l = activation.apply(*l));
            _mm512_loadu_ps(lanes.as_ptr())
        }
    }
}

/// [`accumulate_avx512`] followed by a 2x2 stride-2 max pool: each register block covers two
/// conv rows of one vector of positions, pooled in registers into half a vector of outputs,
/// so the conv's output never reaches memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_pooled_avx512(r: &RowsOut<'_>, y: &mut [f32], outputs: usize) {
    let (pooled_rows, pooled_cols) = (r.out_rows / 2, r.out_cols / 2);
    let taps = r.offsets.len();
    for block in 0..outputs.div_ceil(CHANNEL_BLOCK) {
        let first = block * CHANNEL_BLOCK;
        let count = CHANNEL_BLOCK.min(outputs - first);
        let mut init = [0.0f32; CHANNEL_BLOCK];
        if let Some(bias) = r.bias {
            init[..count].copy_from_slice(&bias[first..first + count]);
        }
        let out = OutBlock {
            first,
            count,
            out_plane: pooled_rows * pooled_cols,
            init,
        };
        let weights = r.packed.as_ptr().add(block * taps * CHANNEL_BLOCK);
        for py in 0..pooled_rows {
            let row = r.plane.as_ptr().add(2 * py * r.row_step);
            // A vector of conv positions in each of the two rows makes LANES / 2 outputs.
            for px in (0..pooled_cols).step_by(LANES / 2) {
                let left = (pooled_cols - px).min(LANES / 2);
                pooled_block_avx512(
                    r,
                    &out,
                    weights,
                    row.add(2 * px),
                    py * pooled_cols + px,
                    left,
                    y,
                );
            }
        }
    }
}

/// One pooled register block: [`CHANNEL_BLOCK`] channels x one vector of conv positions from
/// `row` in two consecutive conv rows, activated, then the maximum over the two rows and over
/// each pair of columns, of which `left` (at most LANES / 2) are stored from `at` in each
/// pooled plane. As in MaxPool, a NaN never wins (`max_ps` returns its second operand, the
/// running maximum, when one is NaN; it starts at -inf).
///
/// # Safety
/// As for [`block_avx512`] with one vector, for both rows (`row` and `row + row_step`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pooled_block_avx512(
    r: &RowsOut<'_>,
    out: &OutBlock,
    weights: *const f32,
    row: *const f32,
    at: usize,
    left: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut top = out.init.map(|b| _mm512_set1_ps(b));
    let mut bottom = top;
    for (t, &offset) in r.offsets.iter().enumerate() {
        let source = row.add(offset);
        let (x0, x1) = (
            _mm512_loadu_ps(source),
            _mm512_loadu_ps(source.add(r.row_step)),
        );
        let ws = weights.add(t * CHANNEL_BLOCK);
        for m in 0..CHANNEL_BLOCK {
            let w = _mm512_set1_ps(*ws.add(m));
            top[m] = _mm512_fmadd_ps(w, x0, top[m]);
            bottom[m] = _mm512_fmadd_ps(w, x1, bottom[m]);
        }
    }
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
    let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
    let mask: __mmask16 = (1u16 << left) - 1;
    for m in 0..out.count {
        let upper = _mm512_max_ps(activate(r.activation, top[m]), lowest);
        let column = _mm512_max_ps(activate(r.activation, bottom[m]), upper);
        let even = _mm512_max_ps(_mm512_permutexvar_ps(evens, column), lowest);
        let pooled = _mm512_max_ps(_mm512_permutexvar_ps(odds, column), even);
        let at = (out.first + m) * out.out_plane + at;
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(at), mask, pooled);
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
                                let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize
                                    - g.pads_begin[0] as isize;
                                let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize
                                    - g.pads_begin[1] as isize;
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
        // (channels, input, kernel, strides, dilations, pads begin/end, outputs)
        let cases: [(
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 4],
            usize,
        ); 9] = [
            (1, [28, 28], [3, 3], [1, 1], [1, 1], [0, 0, 0, 0], 32), // MNIST's first conv
            (3, [9, 20], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 13),  // RGB, padded, a partial block
            (2, [7, 33], [2, 4], [2, 1], [1, 1], [0, 2, 1, 0], 8),   // row stride 2, uneven pads
            (1, [10, 10], [3, 3], [1, 1], [2, 2], [2, 2, 2, 2], 5),  // dilated
            (4, [5, 17], [1, 5], [1, 1], [1, 1], [0, 0, 0, 0], 3),   // 1x5
            (3, [40, 45], [7, 7], [2, 2], [1, 1], [3, 3, 3, 3], 11), // a ResNet stem, odd width
            (5, [12, 70], [3, 3], [2, 3], [1, 2], [1, 0, 1, 2], 9),  // column stride 3, dilated
            (16, [9, 9], [1, 1], [2, 2], [1, 1], [0, 0, 0, 0], 17),  // 1x1 stride 2, 16 taps
            (40, [6, 36], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 8),  // 360 taps, 36 wide
        ];
        for (channels, input, kernel, strides, dilations, pads, outputs) in cases {
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
                        strides[0],
                        kernel[0],
                        pads[0] + pads[2],
                    ),
                    out_dim(
                        input[1],
                        dilations[1],
                        strides[1],
                        kernel[1],
                        pads[1] + pads[3],
                    ),
                ],
                kernel,
                strides,
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
                false,
                &mut y,
                false,
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
                false,
                &mut y,
                true,
            );
            for (i, ((a, b), z)) in y.iter().zip(&want).zip(&z).enumerate() {
                let b = (b + z).max(0.0);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?}: at {i} {a} vs {b}"
                );
            }
            // Activation, then a 2x2 stride-2 max pool (an odd last row or column dropped).
            let [oh, ow] = g.output;
            let (ph, pw) = (oh / 2, ow / 2);
            let clip = Activation::Clip {
                min: -1.0,
                max: 6.0,
            };
            let mut pooled = vec![f32::NAN; outputs * ph * pw];
            conv2d(
                &x,
                &packed,
                Some(&bias),
                &g,
                None,
                clip,
                true,
                &mut pooled,
                true,
            );
            for (i, &a) in pooled.iter().enumerate() {
                let (m, py, px) = (i / (ph * pw), i / pw % ph, i % pw);
                let b = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .map(|(dy, dx)| clip.apply(want[(m * oh + 2 * py + dy) * ow + 2 * px + dx]))
                    .into_iter()
                    .fold(f32::NEG_INFINITY, f32::max);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?} pooled: at {i} {a} vs {b}"
                );
            }
        }
    }
}
