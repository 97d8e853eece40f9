//! Winograd F(2x2, 3x3) convolution for f32 (Lavin & Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2015).
//!
//! A 3x3, stride-1 conv computes each 2x2 output tile from a 4x4 input tile with 16
//! multiplications per (input, output) channel pair instead of 36:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Over channels the element-wise products become 16
//! independent GEMMs, one per position ξ of the 4x4 transformed tile:
//! `M_ξ[tiles × M] = V_ξ[tiles × C] · U_ξ[C × M]`, where `U_ξ` (the transformed filter) is
//! packed once when the session is built and `V_ξ` holds the transformed input tiles. That is
//! 2.25 times fewer multiply-adds than im2col + GEMM, and no im2col matrix.
//!
//! The tiles are the GEMM's rows, so a small output plane (ResNet's 7x7: 16 tiles) wastes at
//! most one row tile, not most of a 32-wide column panel. The transforms use only additions and
//! halvings; the results match direct convolution to a few ulps of the accumulated sum.

use std::cell::RefCell;

use rayon::prelude::*;
use runnx_sgemm::{Lhs, Output, PackedB, Rhs, View};

use super::gemm::{Activation, SendPtr};

/// Transformed input floats (16 × C × tiles) one task works on: 512 KB, about L2.
const BLOCK_FLOATS: usize = 1 << 17;

/// Below this many multiply-adds a conv stays on the calling thread.
const MIN_PARALLEL_MACS: usize = 1 << 20;

/// A 3x3 filter `[M, C, 3, 3]` transformed and packed for F(2x2, 3x3).
pub struct Winograd3x3 {
    channels: usize,
    outputs: usize,
    /// `U_ξ = (G g Gᵀ)_ξ` as a `[C × M]` GEMM right operand, for ξ = 0..16.
    filters: Vec<PackedB>,
}

/// Where a conv's input and output planes lie: sizes, and the padding before each axis.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub batch: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub out_height: usize,
    pub out_width: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// What happens to each output after the convolution: `activation(y + bias[m] + residual)`.
#[derive(Clone, Copy)]
pub struct Post<'a> {
    pub bias: Option<&'a [f32]>,
    /// Elements in Y's layout (`[N, M, H, W]`).
    pub residual: Option<&'a [f32]>,
    pub activation: Activation<f32>,
}

thread_local! {
    /// A task's transformed input and GEMM output blocks, reused across calls.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Winograd3x3 {
    /// Transforms and packs `filter`, `[outputs, channels, 3, 3]` row-major; `None` when its
    /// length does not match.
    pub fn new(filter: &[f32], outputs: usize, channels: usize) -> Option<Winograd3x3> {
        if outputs == 0 || channels == 0 || filter.len() != outputs * channels * 9 {
            return None;
        }
        let mut u = vec![0f32; 16 * channels * outputs];
        for m in 0..outputs {
            for c in 0..channels {
                let g = &filter[(m * channels + c) * 9..][..9];
                for (xi, v) in transform_filter(g).into_iter().enumerate() {
                    u[(xi * channels + c) * outputs + m] = v;
                }
            }
        }
        let filters = u
            .chunks_exact(channels * outputs)
            .map(|data| {
                PackedB::new(View {
                    data,
                    rows: channels,
                    cols: outputs,
                    row_stride: outputs,
                    col_stride: 1,
                })
            })
            .collect();
        Some(Winograd3x3 {
            channels,
            outputs,
            filters,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Whether F(2x2, 3x3) saves work on an `out_height x out_width` plane: a plane with odd
    /// sides computes whole tiles (a 3x3 output takes 4 tiles, 16 positions). Direct GEMM
    /// costs 9 multiply-adds per output, Winograd 16 per tile; ask for a 1.2x saving. (On small
    /// planes direct GEMM also wastes most of its column panels, which Winograd, with tiles as
    /// rows, does not: MNIST's 3x3-output conv ran 8x faster.)
    pub fn pays_off(out_height: usize, out_width: usize) -> bool {
        let tiles = out_height.div_ceil(2) * out_width.div_ceil(2);
        5 * 9 * out_height * out_width >= 6 * 16 * tiles
    }

    /// The convolution of `x` (`[N, C, H, W]`) with this filter, `[N, M, out_h, out_w]`.
    /// `x` and `post.residual` must have the sizes `geo` implies (the caller checked them).
    pub fn forward(&self, x: &[f32], geo: &Geometry, post: &Post<'_>) -> Vec<f32> {
        let (c, m) = (self.channels, self.outputs);
        let (in_plane, out_plane) = (geo.in_height * geo.in_width, geo.out_height * geo.out_width);
        assert_eq!(x.len(), geo.batch * c * in_plane, "winograd: input size");
        let mut y = vec![0f32; geo.batch * m * out_plane];
        assert!(post.residual.is_none_or(|z| z.len() == y.len()));
        assert!(post.bias.is_none_or(|b| b.len() == m));
        let tile_cols = geo.out_width.div_ceil(2);
        let tiles = geo.out_height.div_ceil(2) * tile_cols;
        if y.is_empty() || tiles == 0 {
            return y;
        }
        let kernel = runnx_sgemm::kernel();
        // Tiles per task: a multiple of the kernel's row tile that keeps V inside BLOCK_FLOATS.
        let target = (BLOCK_FLOATS / (16 * c)).max(kernel.mr);
        let block = tiles
            .div_ceil(tiles.div_ceil(target))
            .div_ceil(kernel.mr)
            .saturating_mul(kernel.mr)
            .min(tiles);
        let blocks = tiles.div_ceil(block);
        // With fewer (image, block) pairs than tasks wanted, split the output channels too, at
        // the packed filter's panel boundaries; each such task transforms its block again.
        let threads = rayon::current_num_threads();
        let macs = 16 * c * m * tiles * geo.batch;
        let wanted = if threads > 1 && macs >= MIN_PARALLEL_MACS {
            2 * threads
        } else {
            1
        };
        let m_parts = wanted
            .div_ceil(geo.batch * blocks)
            .min(m.div_ceil(kernel.nr))
            .max(1);
        let m_chunk = m.div_ceil(m_parts).div_ceil(kernel.nr) * kernel.nr;
        let m_parts = m.div_ceil(m_chunk);
        let tasks = geo.batch * blocks * m_parts;
        let out = SendPtr(y.as_mut_ptr());
        let task = |t: usize| {
            let out = &out;
            let (n, b, p) = (t / (blocks * m_parts), t / m_parts % blocks, t % m_parts);
            let tile_range = b * block..((b + 1) * block).min(tiles);
            let channels = p * m_chunk..((p + 1) * m_chunk).min(m);
            let (rows, cols) = (tile_range.len(), channels.len());
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let needed = 16 * rows * (c + cols) + 16 * (tile_cols + 1);
                if s.len() < needed {
                    s.resize(needed, 0.0);
                }
                let job = BlockJob {
                    filters: &self.filters,
                    image: &x[n * c * in_plane..][..c * in_plane],
                    channels: c,
                    outputs: m,
                    geo,
                    post,
                    kernel,
                    target: OutputBlock {
                        image: n,
                        tiles: tile_range,
                        channels,
                    },
                };
                run_block(&job, &mut s[..needed], out);
            });
        };
        if tasks > 1 && wanted > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
        y
    }
}

/// One task: the tiles and output channels of `target`, from the image's input planes.
struct BlockJob<'a> {
    filters: &'a [PackedB],
    image: &'a [f32],
    channels: usize,
    outputs: usize,
    geo: &'a Geometry,
    post: &'a Post<'a>,
    kernel: &'static runnx_sgemm::Kernel,
    target: OutputBlock,
}

/// Runs a [`BlockJob`] with the widest vector instructions the CPU has (the crate itself is
/// built for baseline x86-64; the transforms are plain loops that LLVM vectorises).
fn run_block(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn avx512(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) {
            block_body(job, scratch, out)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) {
            block_body(job, scratch, out)
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(job, scratch, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(job, scratch, out) };
        }
    }
    block_body(job, scratch, out)
}

#[inline(always)]
fn block_body(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) {
    let c = job.channels;
    let (rows, cols) = (job.target.tiles.len(), job.target.channels.len());
    let (v, rest) = scratch.split_at_mut(16 * rows * c);
    let (product, rows_buf) = rest.split_at_mut(16 * rows * cols);
    transform_input(job.image, c, job.geo, job.target.tiles.clone(), v, rows_buf);
    for (xi, filter) in job.filters.iter().enumerate() {
        // V_ξ is stored channel-major ([C][tiles]): a transposed view, which the packer reads
        // a row tile at a time.
        let a = View {
            data: &v[xi * c * rows..][..c * rows],
            rows,
            cols: c,
            row_stride: 1,
            col_stride: rows,
        };
        runnx_sgemm::gemm_with(
            job.kernel,
            Lhs::View(a),
            Rhs::Packed(filter),
            0..rows,
            job.target.channels.clone(),
            Output {
                data: &mut product[xi * rows * cols..][..rows * cols],
                row_stride: cols,
            },
            false,
        );
    }
    // One copy of the output transform per activation, each with its function inlined.
    let (target, m, geo, post) = (&job.target, job.outputs, job.geo, job.post);
    match post.activation {
        Activation::Identity => transform_output(product, target, m, geo, post, out, |v| v),
        Activation::Relu => transform_output(product, target, m, geo, post, out, |v| {
            Activation::Relu.apply(v)
        }),
        Activation::Clip { min, max } => {
            transform_output(product, target, m, geo, post, out, move |v| {
                Activation::Clip { min, max }.apply(v)
            })
        }
        Activation::LeakyRelu { alpha } => {
            transform_output(product, target, m, geo, post, out, move |v| {
                Activation::LeakyRelu { alpha }.apply(v)
            })
        }
    }
}

/// `G g Gᵀ` for one 3x3 filter `g` (row-major), as 16 values row-major.
fn transform_filter(g: &[f32]) -> [f32; 16] {
    // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]], applied to columns then rows.
    let apply = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let mut gg = [[0f32; 3]; 4];
    for col in 0..3 {
        let t = apply(g[col], g[3 + col], g[6 + col]);
        for (row, v) in t.into_iter().enumerate() {
            gg[row][col] = v;
        }
    }
    let mut u = [0f32; 16];
    for (row, r) in gg.iter().enumerate() {
        u[row * 4..row * 4 + 4].copy_from_slice(&apply(r[0], r[1], r[2]));
    }
    u
}

/// Writes `Bᵀ d B` of every tile in `tiles` of one image (`[C, H, W]`) to `v`, laid out
/// `[ξ][C][tile]`. `rows_buf` holds 16 half rows of `tile_cols + 1` floats.
///
/// Per tile row, the four padded input rows are split into even and odd columns, so that both
/// the transform over rows and the one over each tile's four columns (x[2t], x[2t+1],
/// x[2t+2], x[2t+3] = even[t], odd[t], even[t+1], odd[t+1]) run on contiguous slices.
#[inline(always)]
fn transform_input(
    image: &[f32],
    channels: usize,
    geo: &Geometry,
    tiles: std::ops::Range<usize>,
    v: &mut [f32],
    rows_buf: &mut [f32],
) {
    let tile_cols = geo.out_width.div_ceil(2);
    let half = tile_cols + 1;
    let count = tiles.len();
    let (d, w) = rows_buf[..16 * half].split_at_mut(8 * half);
    let in_plane = geo.in_height * geo.in_width;
    let first_row = tiles.start / tile_cols;
    let last_row = (tiles.end - 1) / tile_cols;
    for ch in 0..channels {
        let plane = &image[ch * in_plane..][..in_plane];
        for ty in first_row..=last_row {
            // d: rows 0..4 even columns, then rows 0..4 odd columns.
            for i in 0..4 {
                let (even, odd) = (i * half, (4 + i) * half);
                let iy = (2 * ty + i) as isize - geo.pad_top as isize;
                let (even, odd) = two_slices(d, even, odd, half);
                if iy < 0 || iy as usize >= geo.in_height {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * geo.in_width..][..geo.in_width];
                split_padded_row(src, geo.pad_left, even, odd);
            }
            // Bᵀ d for each parity: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3.
            for parity in 0..2 {
                let rows = &d[parity * 4 * half..][..4 * half];
                let (d0, rest) = rows.split_at(half);
                let (d1, rest) = rest.split_at(half);
                let (d2, d3) = rest.split_at(half);
                let out = &mut w[parity * 4 * half..][..4 * half];
                let (w0, rest) = out.split_at_mut(half);
                let (w1, rest) = rest.split_at_mut(half);
                let (w2, w3) = rest.split_at_mut(half);
                for x in 0..half {
                    w0[x] = d0[x] - d2[x];
                    w1[x] = d1[x] + d2[x];
                    w2[x] = d2[x] - d1[x];
                    w3[x] = d1[x] - d3[x];
                }
            }
            // (Bᵀ d) B over each tile's four columns, the same combination.
            let row_tiles =
                (ty * tile_cols).max(tiles.start)..((ty + 1) * tile_cols).min(tiles.end);
            let (first_tx, n) = (row_tiles.start - ty * tile_cols, row_tiles.len());
            let at = row_tiles.start - tiles.start;
            for i in 0..4 {
                let even = &w[i * half..][..half];
                let odd = &w[(4 + i) * half..][..half];
                let (e0, e1) = (&even[first_tx..][..n], &even[first_tx + 1..][..n]);
                let (o0, o1) = (&odd[first_tx..][..n], &odd[first_tx + 1..][..n]);
                let out = |j: usize| ((i * 4 + j) * channels + ch) * count + at;
                let [v0, v1, v2, v3] = four_slices(v, [out(0), out(1), out(2), out(3)], n);
                for t in 0..n {
                    v0[t] = e0[t] - e1[t];
                    v1[t] = o0[t] + e1[t];
                    v2[t] = e1[t] - o0[t];
                    v3[t] = o0[t] - o1[t];
                }
            }
        }
    }
}

/// Splits input row `src`, padded with `pad` zeros before it (and zeros after), into the even
/// and odd columns of the padded row, `even.len()` (= `odd.len()`) of each.
#[inline(always)]
fn split_padded_row(src: &[f32], pad: usize, even: &mut [f32], odd: &mut [f32]) {
    let half = even.len();
    even.fill(0.0);
    odd.fill(0.0);
    // src[i] lands at padded column i + pad.
    let mut i = 0;
    if pad % 2 == 1 && !src.is_empty() {
        if pad / 2 < half {
            odd[pad / 2] = src[0];
        }
        i = 1;
    }
    // From here on i + pad is even: src[i], src[i + 1] go to even[k], odd[k].
    let k0 = ((i + pad) / 2).min(half);
    let pairs = ((src.len() - i) / 2).min(half - k0);
    for ((e, o), pair) in even[k0..k0 + pairs]
        .iter_mut()
        .zip(&mut odd[k0..k0 + pairs])
        .zip(src[i..].chunks_exact(2))
    {
        *e = pair[0];
        *o = pair[1];
    }
    let tail = i + 2 * pairs;
    if tail < src.len() && k0 + pairs < half {
        even[k0 + pairs] = src[tail];
    }
}

/// Two disjoint `len`-long slices of `v` at offsets `a < b`.
#[inline(always)]
fn two_slices(v: &mut [f32], a: usize, b: usize, len: usize) -> (&mut [f32], &mut [f32]) {
    let (first, second) = v[a..].split_at_mut(b - a);
    (&mut first[..len], &mut second[..len])
}

/// Four disjoint `len`-long slices of `v` at the given increasing offsets.
#[inline(always)]
fn four_slices(v: &mut [f32], starts: [usize; 4], len: usize) -> [&mut [f32]; 4] {
    let [a, b, c, d] = starts;
    debug_assert!(a + len <= b && b + len <= c && c + len <= d);
    let (s0, rest) = v[a..].split_at_mut(b - a);
    let (s1, rest) = rest.split_at_mut(c - b);
    let (s2, s3) = rest.split_at_mut(d - c);
    [
        &mut s0[..len],
        &mut s1[..len],
        &mut s2[..len],
        &mut s3[..len],
    ]
}

/// The outputs one task computes: tiles `tiles` of image `image`, channels `channels`.
struct OutputBlock {
    image: usize,
    tiles: std::ops::Range<usize>,
    channels: std::ops::Range<usize>,
}

/// `Aᵀ X A` of each tile and channel in `block` from the GEMM products (`[ξ][tile][channel]`),
/// with the bias, residual and activation, written into Y through `out`.
#[inline(always)]
fn transform_output(
    product: &[f32],
    block: &OutputBlock,
    outputs: usize,
    geo: &Geometry,
    post: &Post<'_>,
    out: &SendPtr<f32>,
    act: impl Fn(f32) -> f32,
) {
    let (rows, cols) = (block.tiles.len(), block.channels.len());
    let tile_cols = geo.out_width.div_ceil(2);
    let out_plane = geo.out_height * geo.out_width;
    let mut vals = [[0f32; 4]; 64];
    for t in 0..rows {
        let tile = block.tiles.start + t;
        let (oy, ox) = (2 * (tile / tile_cols), 2 * (tile % tile_cols));
        let (h, w) = ((geo.out_height - oy).min(2), (geo.out_width - ox).min(2));
        for first in (0..cols).step_by(vals.len()) {
            let len = vals.len().min(cols - first);
            // X's 16 values for channel `first + j` are product[(ξ·rows + t)·cols + first + j].
            let x = |xi: usize| &product[(xi * rows + t) * cols + first..][..len];
            let (x0, x1, x2, x3) = (x(0), x(1), x(2), x(3));
            let (x4, x5, x6, x7) = (x(4), x(5), x(6), x(7));
            let (x8, x9, x10, x11) = (x(8), x(9), x(10), x(11));
            let (x12, x13, x14, x15) = (x(12), x(13), x(14), x(15));
            for j in 0..len {
                // Aᵀ X: rows X0 + X1 + X2 and X1 - X2 - X3; then · A over columns alike.
                let r0 = [
                    x0[j] + x4[j] + x8[j],
                    x1[j] + x5[j] + x9[j],
                    x2[j] + x6[j] + x10[j],
                    x3[j] + x7[j] + x11[j],
                ];
                let r1 = [
                    x4[j] - x8[j] - x12[j],
                    x5[j] - x9[j] - x13[j],
                    x6[j] - x10[j] - x14[j],
                    x7[j] - x11[j] - x15[j],
                ];
                vals[j] = [
                    r0[0] + r0[1] + r0[2],
                    r0[1] - r0[2] - r0[3],
                    r1[0] + r1[1] + r1[2],
                    r1[1] - r1[2] - r1[3],
                ];
            }
            let first_ch = block.channels.start + first;
            let base = (block.image * outputs + first_ch) * out_plane + oy * geo.out_width + ox;
            let bias = post.bias.map(|b| &b[first_ch..][..len]);
            // The common case, a whole tile, without per-element bounds or option checks.
            let offsets = [0, 1, geo.out_width, geo.out_width + 1];
            let write = |j: usize, q: usize, value: f32| {
                let at = base + j * out_plane + offsets[q];
                // SAFETY: `at` lies inside Y (row oy + q/2 < out_height, column ox + q%2 <
                // out_width, channel < outputs, image < batch), and only the task owning this
                // (image, tile, channel) writes it.
                unsafe { *out.0.add(at) = act(value) };
            };
            match (h == 2 && w == 2, bias, post.residual) {
                (true, Some(bias), Some(z)) => {
                    for (j, v) in vals[..len].iter().enumerate() {
                        for q in 0..4 {
                            write(j, q, v[q] + bias[j] + z[base + j * out_plane + offsets[q]]);
                        }
                    }
                }
                (true, Some(bias), None) => {
                    for (j, v) in vals[..len].iter().enumerate() {
                        for q in 0..4 {
                            write(j, q, v[q] + bias[j]);
                        }
                    }
                }
                _ => {
                    for (j, v) in vals[..len].iter().enumerate() {
                        let bias = bias.map_or(0.0, |b| b[j]);
                        for a in 0..h {
                            for b in 0..w {
                                let q = 2 * a + b;
                                let z = post
                                    .residual
                                    .map_or(0.0, |z| z[base + j * out_plane + offsets[q]]);
                                write(j, q, v[q] + bias + z);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 3x3 stride-1 cross-correlation in f64.
    fn direct(x: &[f32], w: &[f32], geo: &Geometry, c: usize, m: usize) -> Vec<f64> {
        let mut y = vec![0f64; geo.batch * m * geo.out_height * geo.out_width];
        for n in 0..geo.batch {
            for o in 0..m {
                for oy in 0..geo.out_height {
                    for ox in 0..geo.out_width {
                        let mut s = 0f64;
                        for ch in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy + ky) as isize - geo.pad_top as isize;
                                    let ix = (ox + kx) as isize - geo.pad_left as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy as usize >= geo.in_height
                                        || ix as usize >= geo.in_width
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * c + ch) * geo.in_height + iy as usize)
                                        * geo.in_width
                                        + ix as usize];
                                    let wv = w[((o * c + ch) * 3 + ky) * 3 + kx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * m + o) * geo.out_height + oy) * geo.out_width + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_direct_convolution() {
        // (batch, channels, outputs, height, width, pads (top/bottom, left/right))
        let cases = [
            (1, 3, 5, 5, 5, (0, 0)),
            (1, 4, 33, 7, 7, (1, 1)),
            (2, 16, 40, 9, 6, (1, 0)),
            (1, 8, 64, 13, 13, (0, 0)),
            (3, 20, 70, 12, 11, (2, 1)),
            (1, 600, 36, 8, 8, (1, 1)),
        ];
        for (case, &(batch, c, m, h, w, (pt, pl))) in cases.iter().enumerate() {
            let geo = Geometry {
                batch,
                in_height: h,
                in_width: w,
                out_height: h + 2 * pt - 2,
                out_width: w + 2 * pl - 2,
                pad_top: pt,
                pad_left: pl,
            };
            let x = values(batch * c * h * w, case as u32);
            let filter = values(m * c * 9, 100 + case as u32);
            let bias = values(m, 200 + case as u32);
            let out_len = batch * m * geo.out_height * geo.out_width;
            let residual = values(out_len, 300 + case as u32);
            let wg = Winograd3x3::new(&filter, m, c).unwrap();
            let expected = direct(&x, &filter, &geo, c, m);
            for (with_post, act) in [(false, Activation::Identity), (true, Activation::Relu)] {
                let post = Post {
                    bias: with_post.then_some(&bias[..]),
                    residual: with_post.then_some(&residual[..]),
                    activation: act,
                };
                let y = wg.forward(&x, &geo, &post);
                for (i, (&got, &want)) in y.iter().zip(&expected).enumerate() {
                    let ch = i / (geo.out_height * geo.out_width) % m;
                    let want = if with_post {
                        (want + bias[ch] as f64 + residual[i] as f64).max(0.0)
                    } else {
                        want
                    };
                    let tol = 1e-5 * (c as f64 * 9.0).sqrt() * (1.0 + want.abs());
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "case {case} ({with_post}): y[{i}] = {got}, direct {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn pays_off_unless_tiles_are_mostly_padding() {
        assert!(Winograd3x3::pays_off(56, 56));
        assert!(Winograd3x3::pays_off(7, 7));
        assert!(Winograd3x3::pays_off(11, 11));
        assert!(Winograd3x3::pays_off(3, 3));
        assert!(!Winograd3x3::pays_off(1, 9));
        assert!(!Winograd3x3::pays_off(1, 1));
    }
}
