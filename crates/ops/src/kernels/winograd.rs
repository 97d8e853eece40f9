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

use super::gemm::{panel_part, Activation, SendPtr};

/// Transformed input floats (16 × C × tiles) one task works on: 512 KB, about L2.
const BLOCK_FLOATS: usize = 1 << 17;

/// Below this many multiply-adds a conv stays on the calling thread (MNIST's 3x3-output conv,
/// 0.26 M, ran 0.016 ms on one thread and 0.012 on two).
const MIN_PARALLEL_MACS: usize = 1 << 18;

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
    /// A 2x2 stride-2 max pool follows the activation (floor mode, no padding): Y is then
    /// `[N, M, out_h / 2, out_w / 2]` and only the tiles the pool reads are computed, each
    /// tile being exactly one pool window.
    pub pooled: bool,
}

impl Geometry {
    /// Tile rows and columns computed: whole tiles covering the output or, pooled, one per
    /// pooled output (an odd last row or column of the conv is never computed).
    fn tile_grid(&self) -> (usize, usize) {
        if self.pooled {
            (self.out_height / 2, self.out_width / 2)
        } else {
            (self.out_height.div_ceil(2), self.out_width.div_ceil(2))
        }
    }

    /// The size of one plane of Y.
    fn y_plane(&self) -> usize {
        if self.pooled {
            (self.out_height / 2) * (self.out_width / 2)
        } else {
            self.out_height * self.out_width
        }
    }
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
        // Channel by channel, so that the 16 matrices are written along their rows: writing
        // them down their columns (output-major) missed the cache on every store. A channel's
        // rows go through `rows` first: stored straight, the 16 write streams lie a multiple
        // of 4 KiB apart, in one L1 set, and evicted each other.
        let plane = channels * outputs;
        let mut u = vec![0f32; 16 * plane];
        let mut rows = vec![0f32; 16 * outputs];
        for c in 0..channels {
            for m in 0..outputs {
                let g = &filter[(m * channels + c) * 9..][..9];
                for (xi, v) in transform_filter(g).into_iter().enumerate() {
                    rows[xi * outputs + m] = v;
                }
            }
            for (xi, row) in rows.chunks_exact(outputs).enumerate() {
                u[xi * plane + c * outputs..][..outputs].copy_from_slice(row);
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

    /// The size of the transformed filter a run reads: 16 `channels x outputs` f32 matrices.
    pub fn filter_bytes(&self) -> usize {
        16 * self.channels * self.outputs * std::mem::size_of::<f32>()
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

    /// The convolution of `x` (`[N, C, H, W]`) with this filter, `[N, M, out_h, out_w]`
    /// (pooled: `[N, M, out_h / 2, out_w / 2]`). `x` and `post.residual` must have the sizes
    /// `geo` implies (the caller checked them); a pooled conv takes no residual.
    pub fn forward(&self, x: &[f32], geo: &Geometry, post: &Post<'_>) -> Vec<f32> {
        let (c, m) = (self.channels, self.outputs);
        let in_plane = geo.in_height * geo.in_width;
        assert_eq!(x.len(), geo.batch * c * in_plane, "winograd: input size");
        // Every output is written by the tile covering it (pooled: by its tile).
        let mut y = crate::kernels::buffers::f32_buffer(geo.batch * m * geo.y_plane());
        assert!(post
            .residual
            .is_none_or(|z| !geo.pooled && z.len() == y.len()));
        assert!(post.bias.is_none_or(|b| b.len() == m));
        let (tile_rows, tile_cols) = geo.tile_grid();
        let tiles = tile_rows * tile_cols;
        if y.is_empty() || tiles == 0 {
            return y;
        }
        let kernel = runnx_sgemm::kernel();
        // Blocks of about the tiles that keep V inside BLOCK_FLOATS, made of whole row tiles of
        // the kernel and as even as those allow: ResNet's 49-tile planes went in blocks of 36
        // and 13, and at two threads one thread got both 36-tile tasks (14x14 convs: 1.30 ms at
        // one thread, 1.18 at two).
        let target = (BLOCK_FLOATS / (16 * c)).max(kernel.mr);
        let most_blocks = tiles.div_ceil(kernel.mr);
        let mut blocks = tiles.div_ceil(target).min(most_blocks);
        let threads = rayon::current_num_threads();
        let macs = 16 * c * m * tiles * geo.batch;
        let wanted = if threads > 1 && macs >= MIN_PARALLEL_MACS {
            2 * threads
        } else {
            1
        };
        // A few blocks per thread are split evenly: ResNet's 56x56 planes made 7 blocks, 4 on
        // one thread and 3 on the other at batch 1.
        let pairs = geo.batch * blocks;
        if wanted > 1 && pairs > threads && pairs < 4 * threads && pairs % threads != 0 {
            blocks = (pairs.next_multiple_of(threads) / geo.batch).clamp(blocks, most_blocks);
        }
        let block_tiles = |b: usize| panel_part(tiles, kernel.mr, blocks, b);
        // With fewer (image, block) pairs than tasks wanted, split the output channels too, at
        // the packed filter's panel boundaries; each such task transforms its block again.
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
            let tile_range = block_tiles(b);
            let channels = p * m_chunk..((p + 1) * m_chunk).min(m);
            let (rows, cols) = (tile_range.len(), channels.len());
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let needed = 16 * c * (rows + LANES)
                    + 16 * rows * cols
                    + InputLayout::new(geo, &tile_range).scratch();
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

multiversion! {
    /// Runs a [`BlockJob`] with the widest vector instructions the CPU has (the transforms are
    /// plain loops that LLVM vectorises).
    fn run_block(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) => block_body
}

#[inline(always)]
fn block_body(job: &BlockJob<'_>, scratch: &mut [f32], out: &SendPtr<f32>) {
    let c = job.channels;
    let (rows, cols) = (job.target.tiles.len(), job.target.channels.len());
    // V rows carry LANES floats of slack for the input transform's whole-vector stores.
    let v_stride = rows + LANES;
    let (v, rest) = scratch.split_at_mut(16 * c * v_stride);
    let (product, input_scratch) = rest.split_at_mut(16 * rows * cols);
    let tiles = job.target.tiles.clone();
    transform_input(job.image, c, job.geo, tiles, v, v_stride, input_scratch);
    for (xi, filter) in job.filters.iter().enumerate() {
        // V_ξ is stored channel-major ([C][tiles]): a transposed view, which the packer reads
        // a row tile at a time.
        let a = View {
            data: &v[xi * c * v_stride..][..c * v_stride],
            rows,
            cols: c,
            row_stride: 1,
            col_stride: v_stride,
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

/// Width of the fixed-size loops in the input transform: whole vectors (one zmm, two ymm), so
/// that short rows (a 7-wide plane has 4 tiles per row) do not fall to scalar remainder loops.
/// The buffers carry slack for that; lanes past the end of a row compute values nobody reads.
const LANES: usize = 16;

/// Sizes of the input transform's buffers for one block of tiles.
struct InputLayout {
    /// Floats per even (or odd) half of a padded input row: the `tile_cols + 1` columns the
    /// tiles read, rounded up to `LANES`, plus slack for whole-vector loads and stores.
    half_stride: usize,
    /// Padded input rows the block's tile rows read.
    plane_rows: usize,
}

impl InputLayout {
    fn new(geo: &Geometry, tiles: &std::ops::Range<usize>) -> InputLayout {
        let tile_cols = geo.tile_grid().1;
        let (first_row, last_row) = (tiles.start / tile_cols, (tiles.end - 1) / tile_cols);
        InputLayout {
            half_stride: (tile_cols + 1).next_multiple_of(LANES) + 2 * LANES,
            plane_rows: 2 * (last_row - first_row) + 4,
        }
    }

    /// Scratch floats `transform_input` needs.
    fn scratch(&self) -> usize {
        2 * self.plane_rows * self.half_stride
    }
}

/// `LANES` floats of `s` from `at`.
#[inline(always)]
fn lane(s: &[f32], at: usize) -> [f32; LANES] {
    *<&[f32; LANES]>::try_from(&s[at..at + LANES]).expect("LANES floats")
}

/// Stores `LANES` floats at `s[at..]`.
#[inline(always)]
fn set_lane(s: &mut [f32], at: usize, values: [f32; LANES]) {
    *<&mut [f32; LANES]>::try_from(&mut s[at..at + LANES]).expect("LANES floats") = values;
}

/// `Bᵀ d` on `LANES` columns from `at` of four rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3.
#[inline(always)]
fn transform_rows(rows: [&[f32]; 4], at: usize) -> [[f32; LANES]; 4] {
    let [d0, d1, d2, d3] = rows.map(|r| lane(r, at));
    [
        std::array::from_fn(|l| d0[l] - d2[l]),
        std::array::from_fn(|l| d1[l] + d2[l]),
        std::array::from_fn(|l| d2[l] - d1[l]),
        std::array::from_fn(|l| d1[l] - d3[l]),
    ]
}

/// Writes `Bᵀ d B` of every tile in `tiles` of one image (`[C, H, W]`) to `v`, laid out
/// `[ξ][C][tile]` with `v_stride` floats per (ξ, C) row (at least `tiles.len() + LANES`).
///
/// Per channel, each padded input row the block reads is first split into its even and odd
/// columns. A tile's four columns x[2t], x[2t+1], x[2t+2], x[2t+3] are then even[t], odd[t],
/// even[t+1], odd[t+1], so both `Bᵀ d` (over four rows) and `· B` (over those columns) work
/// on whole vectors of consecutive tiles, in registers.
#[inline(always)]
fn transform_input(
    image: &[f32],
    channels: usize,
    geo: &Geometry,
    tiles: std::ops::Range<usize>,
    v: &mut [f32],
    v_stride: usize,
    scratch: &mut [f32],
) {
    let layout = InputLayout::new(geo, &tiles);
    let hs = layout.half_stride;
    let tile_cols = geo.tile_grid().1;
    let (in_width, pad) = (geo.in_width, geo.pad_left);
    let in_plane = geo.in_height * in_width;
    // Split rows: [row][even | odd], `hs` floats each. Columns no row writes stay zero: the
    // left and right padding.
    let split = &mut scratch[..layout.scratch()];
    split.fill(0.0);
    let first_row = tiles.start / tile_cols;
    let last_row = (tiles.end - 1) / tile_cols;
    // Padded column pad + x holds x[x]: input pairs (x[2j], x[2j+1]) go to (even, odd) at
    // index j + pad/2 when pad is even, and to (odd, even) at j + pad/2 and j + pad/2 + 1
    // when it is odd.
    let (first_at, second_at) = (pad / 2, pad / 2 + pad % 2);
    let pair_chunks = in_width.div_ceil(2 * LANES);
    // Past the row's end: from even index ceil((pad + W) / 2) and odd index (pad + W) / 2.
    let (even_end, odd_end) = ((pad + in_width).div_ceil(2), (pad + in_width) / 2);
    for ch in 0..channels {
        for (r, row) in split.chunks_exact_mut(2 * hs).enumerate() {
            let (even, odd) = row.split_at_mut(hs);
            let iy = (2 * first_row + r) as isize - geo.pad_top as isize;
            if iy < 0 || iy as usize >= geo.in_height {
                continue;
            }
            let start = ch * in_plane + iy as usize * in_width;
            let src = &image[start..];
            let (first, second) = if pad % 2 == 0 {
                (&mut *even, &mut *odd)
            } else {
                (&mut *odd, &mut *even)
            };
            if src.len() >= pair_chunks * 2 * LANES {
                // Whole vectors; what they read past the row's end is cleared below.
                for j in (0..pair_chunks * LANES).step_by(LANES) {
                    let pairs: [f32; 2 * LANES] =
                        *<&[f32; 2 * LANES]>::try_from(&src[2 * j..2 * j + 2 * LANES])
                            .expect("2·LANES floats");
                    set_lane(first, first_at + j, std::array::from_fn(|l| pairs[2 * l]));
                    set_lane(
                        second,
                        second_at + j,
                        std::array::from_fn(|l| pairs[2 * l + 1]),
                    );
                }
                set_lane(even, even_end, [0.0; LANES]);
                set_lane(odd, odd_end, [0.0; LANES]);
            } else {
                // The image's last rows: element by element.
                for (x, &value) in src[..in_width].iter().enumerate() {
                    let col = pad + x;
                    if col % 2 == 0 {
                        even[col / 2] = value;
                    } else {
                        odd[col / 2] = value;
                    }
                }
            }
        }
        for ty in first_row..=last_row {
            let r0 = 2 * (ty - first_row);
            let row = |i: usize, parity: usize| &split[(2 * (r0 + i) + parity) * hs..][..hs];
            let even_rows = [row(0, 0), row(1, 0), row(2, 0), row(3, 0)];
            let odd_rows = [row(0, 1), row(1, 1), row(2, 1), row(3, 1)];
            let row_tiles =
                (ty * tile_cols).max(tiles.start)..((ty + 1) * tile_cols).min(tiles.end);
            let (first_tx, n) = (row_tiles.start - ty * tile_cols, row_tiles.len());
            let at = row_tiles.start - tiles.start;
            for k in (0..n).step_by(LANES) {
                let t = first_tx + k;
                let (e0, e1) = (
                    transform_rows(even_rows, t),
                    transform_rows(even_rows, t + 1),
                );
                let (o0, o1) = (transform_rows(odd_rows, t), transform_rows(odd_rows, t + 1));
                for i in 0..4 {
                    let (e0, e1, o0, o1) = (e0[i], e1[i], o0[i], o1[i]);
                    let out = |j: usize| ((i * 4 + j) * channels + ch) * v_stride + at + k;
                    // (Bᵀ d) B over the columns, as over the rows. Lanes past n write tiles of
                    // later rows (rewritten later) or the row's slack.
                    set_lane(v, out(0), std::array::from_fn(|l| e0[l] - e1[l]));
                    set_lane(v, out(1), std::array::from_fn(|l| o0[l] + e1[l]));
                    set_lane(v, out(2), std::array::from_fn(|l| e1[l] - o0[l]));
                    set_lane(v, out(3), std::array::from_fn(|l| o0[l] - o1[l]));
                }
            }
        }
    }
}

/// The outputs one task computes: tiles `tiles` of image `image`, channels `channels`.
struct OutputBlock {
    image: usize,
    tiles: std::ops::Range<usize>,
    channels: std::ops::Range<usize>,
}

/// Output channels the output transform handles at once (its arrays live on the stack).
const OUT_CHUNK: usize = 64;

/// `Aᵀ X A` of each tile and channel in `block` from the GEMM products (`[ξ][tile][channel]`),
/// with the bias, residual and activation, written into Y through `out`; pooled, the maximum
/// of each tile's four activated outputs (a NaN never wins, as in MaxPool).
///
/// The arithmetic runs on vectors of channels; only the final stores (and residual loads)
/// go element by element, since a channel's outputs lie a plane apart in Y.
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
    let tile_cols = geo.tile_grid().1;
    let out_plane = geo.y_plane();
    // Each tile's four outputs, row-major, as offsets in a plane of Y.
    let offsets = [0, 1, geo.out_width, geo.out_width + 1];
    // y[q][j]: output q of the tile in channel `first + j`.
    let mut y = [[0f32; OUT_CHUNK]; 4];
    for t in 0..rows {
        let tile = block.tiles.start + t;
        let (oy, ox) = (2 * (tile / tile_cols), 2 * (tile % tile_cols));
        let (h, w) = ((geo.out_height - oy).min(2), (geo.out_width - ox).min(2));
        let inside = |q: usize| q / 2 < h && q % 2 < w;
        for first in (0..cols).step_by(OUT_CHUNK) {
            let len = OUT_CHUNK.min(cols - first);
            // X's 16 values for channel `first + j` are product[(ξ·rows + t)·cols + first + j].
            let x = |xi: usize| &product[(xi * rows + t) * cols + first..][..len];
            let (x0, x1, x2, x3) = (x(0), x(1), x(2), x(3));
            let (x4, x5, x6, x7) = (x(4), x(5), x(6), x(7));
            let (x8, x9, x10, x11) = (x(8), x(9), x(10), x(11));
            let (x12, x13, x14, x15) = (x(12), x(13), x(14), x(15));
            let [y0, y1, y2, y3] = &mut y;
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
                y0[j] = r0[0] + r0[1] + r0[2];
                y1[j] = r0[1] - r0[2] - r0[3];
                y2[j] = r1[0] + r1[1] + r1[2];
                y3[j] = r1[1] - r1[2] - r1[3];
            }
            let first_ch = block.channels.start + first;
            if let Some(bias) = post.bias {
                let bias = &bias[first_ch..][..len];
                for yq in y.iter_mut() {
                    for (v, b) in yq[..len].iter_mut().zip(bias) {
                        *v += b;
                    }
                }
            }
            if geo.pooled {
                // The pooled grid is the tile grid: the tile's index is its output's position.
                let at = (block.image * outputs + first_ch) * out_plane + tile;
                for j in 0..len {
                    let best = y.iter().fold(f32::NEG_INFINITY, |best, yq| {
                        let v = act(yq[j]);
                        if v > best {
                            v
                        } else {
                            best
                        }
                    });
                    // SAFETY: as below, for the pooled plane.
                    unsafe { *out.0.add(at + j * out_plane) = best };
                }
                continue;
            }
            let base = (block.image * outputs + first_ch) * out_plane + oy * geo.out_width + ox;
            for (q, yq) in y.iter().enumerate().filter(|&(q, _)| inside(q)) {
                let at = base + offsets[q];
                // SAFETY (both loops): the element lies inside Y (row oy + q/2 < out_height,
                // column ox + q%2 < out_width, channel < outputs, image < batch), which the
                // residual matches in size (asserted in `forward`), and only the task owning
                // this (image, tile, channel) writes it. Unchecked, because these scattered
                // one-element reads and writes are a large part of the output transform
                // (bounds-checked residual reads made ResNet's residual convs 20% slower).
                match post.residual {
                    Some(z) => {
                        for (j, &v) in yq[..len].iter().enumerate() {
                            let i = at + j * out_plane;
                            unsafe { *out.0.add(i) = act(v + *z.get_unchecked(i)) };
                        }
                    }
                    None => {
                        for (j, &v) in yq[..len].iter().enumerate() {
                            unsafe { *out.0.add(at + j * out_plane) = act(v) };
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

    /// A 3x3 conv of `[h, w]` planes padded by `pt` rows and `pl` columns on each side.
    fn padded_geometry(
        batch: usize,
        [h, w]: [usize; 2],
        [pt, pl]: [usize; 2],
        pooled: bool,
    ) -> Geometry {
        Geometry {
            batch,
            in_height: h,
            in_width: w,
            out_height: h + 2 * pt - 2,
            out_width: w + 2 * pl - 2,
            pad_top: pt,
            pad_left: pl,
            pooled,
        }
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
            // 49 tiles in four blocks of whole row tiles (12, 12, 12, 13).
            (1, 600, 8, 14, 14, (1, 1)),
            // Rows wider than one vector of pairs; an even left padding.
            (2, 3, 18, 35, 40, (0, 1)),
            (1, 4, 17, 9, 33, (1, 2)),
        ];
        for (case, &(batch, c, m, h, w, (pt, pl))) in cases.iter().enumerate() {
            let geo = padded_geometry(batch, [h, w], [pt, pl], false);
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
    fn pooled_is_the_max_of_each_activated_tile() {
        // (batch, channels, outputs, height, width, pads): odd and even output sides, so the
        // pool drops a last row or column of the conv, or not.
        let cases = [
            (2, 32, 64, 13, 13, (0, 0)),
            (1, 8, 20, 10, 9, (1, 0)),
            (3, 17, 9, 6, 12, (1, 1)),
        ];
        for (case, &(batch, c, m, h, w, (pt, pl))) in cases.iter().enumerate() {
            let geo = padded_geometry(batch, [h, w], [pt, pl], true);
            let x = values(batch * c * h * w, 10 + case as u32);
            let filter = values(m * c * 9, 110 + case as u32);
            let bias = values(m, 210 + case as u32);
            let wg = Winograd3x3::new(&filter, m, c).unwrap();
            let conv = direct(&x, &filter, &geo, c, m);
            let post = Post {
                bias: Some(&bias),
                residual: None,
                activation: Activation::Relu,
            };
            let y = wg.forward(&x, &geo, &post);
            let (ph, pw) = (geo.out_height / 2, geo.out_width / 2);
            assert_eq!(y.len(), batch * m * ph * pw);
            for (i, &got) in y.iter().enumerate() {
                let (plane, py, px) = (i / (ph * pw), i / pw % ph, i % pw);
                let window = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(dy, dx)| {
                    let at = (plane * geo.out_height + 2 * py + dy) * geo.out_width + 2 * px + dx;
                    (conv[at] + bias[plane % m] as f64).max(0.0)
                });
                let want = window.into_iter().fold(f64::MIN, f64::max);
                let tol = 1e-5 * (c as f64 * 9.0).sqrt() * (1.0 + want.abs());
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "case {case}: y[{i}] = {got}, direct {want}"
                );
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
