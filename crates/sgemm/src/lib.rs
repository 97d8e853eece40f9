//! Single-precision matrix multiplication, `C = A·B` or `C += A·B`, on packed panels.
//!
//! The layout is the classic one of BLIS and MLAS, in row-major terms:
//! - B (`k x n`) is packed into panels of `NR` columns: for each k, `NR` consecutive values, so
//!   the micro-kernel loads one or two whole vectors per k.
//! - A (`m x k`) is packed into panels of `MR` rows: for each k, `MR` consecutive values, each
//!   broadcast against the B vectors.
//! - The micro-kernel keeps an `MR x NR` tile of C in registers for the whole k loop.
//!
//! K is cut into blocks of [`KC`] so that one A panel (`MR x KC`) stays in L1 while the kernel
//! walks a block of B panels (`KC x NC`) held in L2. Constant operands (weights) are packed once
//! with [`PackedA::new`] or [`PackedB::new`]; the others are packed per call into thread-local
//! scratch, or produced block by block by a [`BlockSource`] (Conv's im2col).
//!
//! This crate computes one block of C on the calling thread; splitting C across threads and
//! applying bias/activation epilogues is the caller's job (runnx-ops' `kernels::gemm`).
//!
//! Numerics: each output is a sum of `k` products accumulated in f32 with fused multiply-adds,
//! in k order within a block and block by block, so the error is bounded by about `k·ε·Σ|a·b|`
//! (ε = 2⁻²⁴), as for any f32 dot product.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

mod kernels;

use kernels::ALayout;
pub use kernels::Kernel;

/// Depth of one K block: an A panel (`MR x KC` floats) fits in L1 beside a few B panels.
pub const KC: usize = 256;
/// Width of one block of packed B (`KC x NC` floats, 384 KiB), sized for L2.
const NC: usize = 384;

/// The fastest kernel this CPU supports, chosen once.
pub fn kernel() -> &'static Kernel {
    static CHOSEN: OnceLock<&'static Kernel> = OnceLock::new();
    CHOSEN.get_or_init(|| *kernels::supported().first().expect("portable kernel"))
}

/// Every kernel this CPU supports, fastest first (tests run them all).
pub fn supported_kernels() -> Vec<&'static Kernel> {
    kernels::supported()
}

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View<'_> {
    /// Whether every addressed element lies inside `data`.
    pub fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|l| l < self.data.len())
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// A matrix produced on demand, a block at a time (Conv's im2col).
pub trait BlockSource: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Writes the block `rows x cols` into `out`, row-major (exactly `rows.len() · cols.len()`).
    fn fill(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]);

    /// Writes the block straight in packed-B layout, panels of `width` columns: element `(p, j)`
    /// of the block at `out[(j / width)·width·rows.len() + p·width + j % width]`, zeros past the
    /// last column. Returns `false` (writing nothing) when this source cannot, and the block is
    /// filled row-major and packed instead.
    fn fill_panels(
        &self,
        _rows: Range<usize>,
        _cols: Range<usize>,
        _width: usize,
        _out: &mut [f32],
    ) -> bool {
        false
    }
}

/// A vector of f32 whose first element is 64-byte aligned (one cache line, one AVX-512 vector).
#[derive(Clone, Default)]
struct AlignedBuf {
    storage: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::default();
        buf.resize(len);
        buf
    }

    /// Makes room for `len` elements; contents are unspecified afterwards.
    fn resize(&mut self, len: usize) {
        if self.storage.len() < len + 16 {
            self.storage = vec![0.0; len + 16];
            let misalign = (self.storage.as_ptr() as usize / 4) % 16;
            self.offset = (16 - misalign) % 16;
        }
        self.len = len;
    }

    fn as_slice(&self) -> &[f32] {
        &self.storage[self.offset..self.offset + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

fn ceil_to(x: usize, multiple: usize) -> usize {
    x.div_ceil(multiple) * multiple
}

/// The K blocks of a depth-`k` product: `(block index, range)`.
fn k_blocks(k: usize) -> impl Iterator<Item = (usize, Range<usize>)> {
    (0..k.div_ceil(KC)).map(move |q| (q, q * KC..((q + 1) * KC).min(k)))
}

/// Whether the tiles read a row-major A where it lies instead of packing it: packing BERT's
/// activations for each product cost 4% of its run, and 1024x128 by 128x512 ran 1.24 -> 1.17 ms,
/// 1024x512 by 512x128 1.32 -> 1.19 ms. Not when A's rows are a multiple of 4 KiB apart: a
/// tile's 12 rows then share one L1 set, of 8 ways (1024x2048 by 2048x128 ran 6% slower).
fn reads_rows_in_place(a: &View) -> bool {
    a.col_stride == 1 && (a.rows == 1 || a.row_stride % 1024 != 0)
}

/// Packs rows `rows` and depths `depth` of `a` into `out` as `MR`-row panels: element `(i, p)`
/// of the block goes to `out[(i / mr)·mr·kc + p·mr + i % mr]`. The last panel's lanes past the
/// last row keep whatever `out` held (or, from a transposed view, the values that follow): a tile
/// of `h` rows reads `h` lanes. Zeroing them cost a fifth of a batch-1 linear layer.
fn pack_a_block(a: &View, rows: Range<usize>, depth: Range<usize>, mr: usize, out: &mut [f32]) {
    // The kernels' row tiles, as constants: full-height runs then copy as a few vector moves
    // instead of a memmove call per depth (Winograd packs a 4-row panel for each of 64 depths).
    match mr {
        12 => pack_a_panels(a, rows, depth, 12, out),
        6 => pack_a_panels(a, rows, depth, 6, out),
        4 => pack_a_panels(a, rows, depth, 4, out),
        _ => pack_a_panels(a, rows, depth, mr, out),
    }
}

#[inline(always)]
fn pack_a_panels(a: &View, rows: Range<usize>, depth: Range<usize>, mr: usize, out: &mut [f32]) {
    let kc = depth.len();
    for (panel, first) in rows.clone().step_by(mr).enumerate() {
        let dst = &mut out[panel * mr * kc..(panel + 1) * mr * kc];
        let height = mr.min(rows.end - first);
        if a.row_stride == 1 && a.col_stride != 1 {
            // A transposed view: each depth's rows are adjacent.
            for (p, d) in depth.clone().enumerate() {
                let src = &a.data[first + d * a.col_stride..];
                let run = &mut dst[p * mr..(p + 1) * mr];
                if height == mr || src.len() >= mr {
                    // Whole runs, a few vector moves. Lanes past `height` then hold other
                    // rows' values, which no tile reads: a tile of h rows reads h lanes.
                    run.copy_from_slice(&src[..mr]);
                } else {
                    run[..height].copy_from_slice(&src[..height]);
                }
            }
            continue;
        }
        if a.col_stride == 1 {
            transpose_rows(a, first, height, depth.clone(), mr, dst);
        } else {
            for (p, d) in depth.clone().enumerate() {
                for r in 0..height {
                    dst[p * mr + r] = a.at(first + r, d);
                }
            }
        }
    }
}

/// Packs rows `first..first + height` of a row-major `a` (col_stride 1), depths `depth`, into
/// one panel `dst` (`[depth][mr]`): a transpose. On x86-64 it moves 4x4 blocks with SSE
/// shuffles (baseline, no dispatch needed): an element-by-element transpose took 15% of a
/// 128x512x128 product (BERT's activations are packed for every weight MatMul).
fn transpose_rows(
    a: &View,
    first: usize,
    height: usize,
    depth: Range<usize>,
    mr: usize,
    dst: &mut [f32],
) {
    let kc = depth.len();
    let row = |r: usize| &a.data[(first + r) * a.row_stride + depth.start..][..kc];
    #[cfg(target_arch = "x86_64")]
    let done_rows = {
        use std::arch::x86_64::*;
        let blocks = kc / 4 * 4;
        for r in (0..height / 4 * 4).step_by(4) {
            let rows = [row(r), row(r + 1), row(r + 2), row(r + 3)];
            for p in (0..blocks).step_by(4) {
                assert!((p + 3) * mr + r + 4 <= dst.len());
                // SAFETY: SSE is part of x86-64; each row slice holds kc >= p + 4 floats, and
                // the four stores end inside dst (asserted).
                unsafe {
                    let [a0, a1, a2, a3] = rows.map(|x| _mm_loadu_ps(x.as_ptr().add(p)));
                    let (t0, t1) = (_mm_unpacklo_ps(a0, a1), _mm_unpacklo_ps(a2, a3));
                    let (t2, t3) = (_mm_unpackhi_ps(a0, a1), _mm_unpackhi_ps(a2, a3));
                    let out = dst.as_mut_ptr().add(p * mr + r);
                    _mm_storeu_ps(out, _mm_movelh_ps(t0, t1));
                    _mm_storeu_ps(out.add(mr), _mm_movehl_ps(t1, t0));
                    _mm_storeu_ps(out.add(2 * mr), _mm_movelh_ps(t2, t3));
                    _mm_storeu_ps(out.add(3 * mr), _mm_movehl_ps(t3, t2));
                }
            }
            for (i, src) in rows.iter().enumerate() {
                for p in blocks..kc {
                    dst[p * mr + r + i] = src[p];
                }
            }
        }
        height / 4 * 4
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done_rows = 0;
    for r in done_rows..height {
        for (p, &v) in row(r).iter().enumerate() {
            dst[p * mr + r] = v;
        }
    }
}

/// Packs depths `depth` and columns `cols` of `b` as `NR`-column panels, zero-padding the last:
/// element `(p, j)` of the block goes to `out[(j / nr)·nr·kc + p·nr + j % nr]`.
fn pack_b_block(b: &View, depth: Range<usize>, cols: Range<usize>, nr: usize, out: &mut [f32]) {
    let kc = depth.len();
    for (panel, first) in cols.clone().step_by(nr).enumerate() {
        let dst = &mut out[panel * nr * kc..(panel + 1) * nr * kc];
        let width = nr.min(cols.end - first);
        if b.row_stride == 1 && b.col_stride != 1 {
            // A transposed view (attention's Kᵀ): each column's depths are adjacent, read
            // once each and written down the panel.
            for j in 0..width {
                let column = &b.data[(first + j) * b.col_stride + depth.start..][..kc];
                for (row, &v) in dst.chunks_exact_mut(nr).zip(column) {
                    row[j] = v;
                }
            }
            if width < nr {
                dst.chunks_exact_mut(nr)
                    .for_each(|row| row[width..].fill(0.0));
            }
            continue;
        }
        for (p, d) in depth.clone().enumerate() {
            let row = &mut dst[p * nr..(p + 1) * nr];
            if b.col_stride == 1 {
                row[..width].copy_from_slice(&b.data[d * b.row_stride + first..][..width]);
            } else {
                for (j, v) in row[..width].iter_mut().enumerate() {
                    *v = b.at(d, first + j);
                }
            }
            row[width..].fill(0.0);
        }
    }
}

/// A (`m x k`) packed once, for a constant left operand (Conv filters).
#[derive(Clone)]
pub struct PackedA {
    rows: usize,
    depth: usize,
    mr: usize,
    data: AlignedBuf,
}

impl PackedA {
    /// Packs `a` for the kernel [`kernel`] returns.
    pub fn new(a: View) -> PackedA {
        Self::for_kernel(a, kernel())
    }

    pub fn for_kernel(a: View, kernel: &Kernel) -> PackedA {
        assert!(a.fits(), "PackedA: view outside its data");
        let mr = kernel.mr;
        let padded = ceil_to(a.rows, mr);
        let mut data = AlignedBuf::zeroed(padded * a.cols);
        for (q, depth) in k_blocks(a.cols) {
            let start = q * KC * padded;
            let block = &mut data.as_mut_slice()[start..start + padded * depth.len()];
            pack_a_block(&a, 0..a.rows, depth, mr, block);
        }
        PackedA {
            rows: a.rows,
            depth: a.cols,
            mr,
            data,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.data.len * 4
    }

    /// The panel holding row `row` (a multiple of MR) in K block `q`.
    fn panel(&self, q: usize, row: usize) -> &[f32] {
        let kc = KC.min(self.depth - q * KC);
        let start = q * KC * ceil_to(self.rows, self.mr) + row * kc;
        &self.data.as_slice()[start..start + self.mr * kc]
    }
}

/// B (`k x n`) packed once, for a constant right operand (MatMul/Gemm weights).
#[derive(Clone)]
pub struct PackedB {
    depth: usize,
    cols: usize,
    nr: usize,
    data: AlignedBuf,
}

impl PackedB {
    /// Packs `b` for the kernel [`kernel`] returns.
    pub fn new(b: View) -> PackedB {
        Self::for_kernel(b, kernel())
    }

    pub fn for_kernel(b: View, kernel: &Kernel) -> PackedB {
        assert!(b.fits(), "PackedB: view outside its data");
        let nr = kernel.nr;
        let padded = ceil_to(b.cols, nr);
        let mut data = AlignedBuf::zeroed(padded * b.rows);
        for (q, depth) in k_blocks(b.rows) {
            let start = q * KC * padded;
            let block = &mut data.as_mut_slice()[start..start + padded * depth.len()];
            pack_b_block(&b, depth, 0..b.cols, nr, block);
        }
        PackedB {
            depth: b.rows,
            cols: b.cols,
            nr,
            data,
        }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len * 4
    }

    /// The panels from column `col` (a multiple of NR) on, in K block `q`.
    fn panels_from(&self, q: usize, col: usize) -> &[f32] {
        let kc = KC.min(self.depth - q * KC);
        let start = q * KC * ceil_to(self.cols, self.nr) + col * kc;
        let end = q * KC * ceil_to(self.cols, self.nr) + ceil_to(self.cols, self.nr) * kc;
        &self.data.as_slice()[start..end]
    }
}

/// The left operand of [`gemm`].
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    Packed(&'a PackedA),
    View(View<'a>),
}

/// The right operand of [`gemm`].
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Packed(&'a PackedB),
    View(View<'a>),
    Source(&'a dyn BlockSource),
}

impl Lhs<'_> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Lhs::Packed(p) => (p.rows, p.depth),
            Lhs::View(v) => (v.rows, v.cols),
        }
    }
}

impl Rhs<'_> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Rhs::Packed(p) => (p.depth, p.cols),
            Rhs::View(v) => (v.rows, v.cols),
            Rhs::Source(s) => (s.rows(), s.cols()),
        }
    }
}

/// Per-thread packing buffers, reused across calls.
#[derive(Default)]
struct Scratch {
    a: AlignedBuf,
    b: AlignedBuf,
    source: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Where the product goes: rows of `C` are `row_stride` apart.
pub struct Output<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
}

/// Computes the block `rows x cols` of `C = A·B` (or `C += A·B` with `accumulate`) on the
/// calling thread, with the fastest kernel. `out` holds that block only: its element `(0, 0)` is
/// C's `(rows.start, cols.start)`.
///
/// Packed operands must have been packed for [`kernel`], a packed A's `rows.start` must be a
/// multiple of its panel height and a packed B's `cols.start` of its panel width; otherwise, or
/// when shapes or `out` do not fit, this panics (callers validate user input before).
pub fn gemm(a: Lhs, b: Rhs, rows: Range<usize>, cols: Range<usize>, out: Output, accumulate: bool) {
    gemm_with(kernel(), a, b, rows, cols, out, accumulate)
}

/// [`gemm`] with a given kernel (tests compare every supported kernel).
pub fn gemm_with(
    kernel: &Kernel,
    a: Lhs,
    b: Rhs,
    rows: Range<usize>,
    cols: Range<usize>,
    out: Output,
    accumulate: bool,
) {
    let rsc = out.row_stride;
    if !rows.is_empty() && !cols.is_empty() {
        assert!(
            rsc >= cols.len() && out.data.len() >= (rows.len() - 1) * rsc + cols.len(),
            "gemm: output too small"
        );
    }
    // SAFETY: `out` covers the block (checked above) and is borrowed exclusively.
    unsafe {
        gemm_raw(
            kernel,
            a,
            b,
            rows,
            cols,
            out.data.as_mut_ptr(),
            rsc,
            accumulate,
        )
    }
}

/// [`gemm_with`] into a raw block of C, for callers whose threads write disjoint blocks of one
/// matrix (a `&mut` slice per block would overlap).
///
/// # Safety
/// `c` must address `rows.len()` rows of `cols.len()` writable floats, `rsc` apart, that nothing
/// else reads or writes during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw(
    kernel: &Kernel,
    a: Lhs,
    b: Rhs,
    rows: Range<usize>,
    cols: Range<usize>,
    c: *mut f32,
    rsc: usize,
    accumulate: bool,
) {
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    assert_eq!(k, kb, "gemm: inner dimensions differ");
    assert!(rows.start <= rows.end && rows.end <= m && cols.start <= cols.end && cols.end <= n);
    let (mr, nr) = (kernel.mr, kernel.nr);
    if let Lhs::Packed(p) = a {
        assert!(
            p.mr == mr && rows.start % mr == 0,
            "gemm: packed A does not fit"
        );
    }
    if let Rhs::Packed(p) = b {
        assert!(
            p.nr == nr && cols.start % nr == 0,
            "gemm: packed B does not fit"
        );
    }
    if let Lhs::View(v) = a {
        assert!(v.fits(), "gemm: A outside its data");
    }
    if let Rhs::View(v) = b {
        assert!(v.fits(), "gemm: B outside its data");
    }
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..rows.len() {
                // SAFETY: row r of the block (the caller's contract).
                unsafe { std::slice::from_raw_parts_mut(c.add(r * rsc), cols.len()) }.fill(0.0);
            }
        }
        return;
    }
    SCRATCH.with(|scratch| {
        let mut guard = scratch.try_borrow_mut();
        let mut fallback = Scratch::default();
        let scratch = match guard.as_deref_mut() {
            Ok(s) => s,
            Err(_) => &mut fallback,
        };
        let in_place = matches!(a, Lhs::View(v) if reads_rows_in_place(&v));
        for (q, depth) in k_blocks(k) {
            let kc = depth.len();
            let acc = accumulate || q > 0;
            if let (Lhs::View(v), false) = (a, in_place) {
                scratch.a.resize(ceil_to(rows.len(), mr) * kc);
                pack_a_block(
                    &v,
                    rows.clone(),
                    depth.clone(),
                    mr,
                    scratch.a.as_mut_slice(),
                );
            }
            for block_start in cols.clone().step_by(NC) {
                let block = block_start..(block_start + NC).min(cols.end);
                let mut prefetch = match b {
                    Rhs::Packed(p) if p.size_bytes() >= PREFETCH_MIN_BYTES => {
                        NextBlock::after(p, q, &block, &cols)
                    }
                    _ => NextBlock::none(),
                };
                let b_panels: &[f32] = 'source: {
                    match b {
                        Rhs::Packed(p) => p.panels_from(q, block.start),
                        Rhs::View(v) => {
                            scratch.b.resize(ceil_to(block.len(), nr) * kc);
                            pack_b_block(
                                &v,
                                depth.clone(),
                                block.clone(),
                                nr,
                                scratch.b.as_mut_slice(),
                            );
                            scratch.b.as_slice()
                        }
                        Rhs::Source(s) => {
                            scratch.b.resize(ceil_to(block.len(), nr) * kc);
                            if s.fill_panels(
                                depth.clone(),
                                block.clone(),
                                nr,
                                scratch.b.as_mut_slice(),
                            ) {
                                break 'source scratch.b.as_slice();
                            }
                            scratch.source.resize(kc * block.len(), 0.0);
                            s.fill(depth.clone(), block.clone(), &mut scratch.source);
                            let view = View {
                                data: &scratch.source,
                                rows: kc,
                                cols: block.len(),
                                row_stride: block.len(),
                                col_stride: 1,
                            };
                            scratch.b.resize(ceil_to(block.len(), nr) * kc);
                            pack_b_block(
                                &view,
                                0..kc,
                                0..block.len(),
                                nr,
                                scratch.b.as_mut_slice(),
                            );
                            scratch.b.as_slice()
                        }
                    }
                };
                for (i, row) in rows.clone().step_by(mr).enumerate() {
                    let height = mr.min(rows.end - row);
                    // The tile's A operand: a packed panel, or row `row` of A at depth
                    // `depth.start` with the rows `a_row_stride` apart.
                    let (a_ptr, a_row_stride, layout) = match a {
                        Lhs::Packed(p) => (p.panel(q, row).as_ptr(), 0, ALayout::Panel),
                        Lhs::View(v) if in_place => (
                            v.data[row * v.row_stride + depth.start..].as_ptr(),
                            v.row_stride,
                            ALayout::Rows,
                        ),
                        Lhs::View(_) => (
                            scratch.a.as_slice()[i * mr * kc..(i + 1) * mr * kc].as_ptr(),
                            0,
                            ALayout::Panel,
                        ),
                    };
                    let tile = kernel.tile(height, layout);
                    for (j, col) in block.clone().step_by(nr).enumerate() {
                        let width = nr.min(block.end - col);
                        let b_panel = &b_panels[j * nr * kc..(j + 1) * nr * kc];
                        let offset = (row - rows.start) * rsc + (col - cols.start);
                        let next = prefetch.next_panel();
                        if width == nr {
                            // SAFETY: A's operand holds the tile's `height` rows and kc depths
                            // (a kc·MR panel, or rows of A, which `fits`), the B panel kc·NR
                            // floats; the C tile is `height` rows of NR floats `rsc` apart
                            // inside the caller's block (`col + NR <= cols.end`).
                            unsafe {
                                tile(
                                    kc,
                                    a_ptr,
                                    a_row_stride,
                                    b_panel.as_ptr(),
                                    next,
                                    c.add(offset),
                                    rsc,
                                    acc,
                                )
                            };
                        } else {
                            let mut edge = [0f32; kernels::MAX_TILE];
                            // SAFETY: as above, into a local MR x NR buffer.
                            unsafe {
                                tile(
                                    kc,
                                    a_ptr,
                                    a_row_stride,
                                    b_panel.as_ptr(),
                                    next,
                                    edge.as_mut_ptr(),
                                    nr,
                                    false,
                                )
                            };
                            for r in 0..height {
                                // SAFETY: row r of the tile, `width` floats inside the caller's block.
                                let dst = unsafe {
                                    std::slice::from_raw_parts_mut(c.add(offset + r * rsc), width)
                                };
                                let src = &edge[r * nr..r * nr + width];
                                if acc {
                                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                                } else {
                                    dst.copy_from_slice(src);
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Packed B operands at least this large are read from memory, not from a cache, on each call
/// (a 3x3 conv's 512x512 filter is 9.4 MB): their next block is prefetched.
const PREFETCH_MIN_BYTES: usize = 1 << 19;

/// The packed-B block a [`gemm_raw`] call multiplies after the current one, whose panels the
/// current block's first tiles fetch toward L2, one panel per tile (see [`kernels::TileFn`]).
///
/// A weight matrix larger than the caches streams in from memory while the first row of tiles
/// of each block waits on it: at 49 rows by 4608x512 (ResNet's last convs, transposed), the
/// tiles ran at 90 GFLOP/s with the weights in memory against 140 in cache.
struct NextBlock {
    panels: *const f32,
    panel_len: usize,
    count: usize,
    fetched: usize,
}

impl NextBlock {
    fn none() -> NextBlock {
        NextBlock {
            panels: std::ptr::null(),
            panel_len: 0,
            count: 0,
            fetched: 0,
        }
    }

    /// The block after `block` in K block `q`, in a call over columns `cols`: the next column
    /// block, or the first of the next K block.
    fn after(p: &PackedB, q: usize, block: &Range<usize>, cols: &Range<usize>) -> NextBlock {
        let (next_q, next_start) = if block.end < cols.end {
            (q, block.end)
        } else if (q + 1) * KC < p.depth {
            (q + 1, cols.start)
        } else {
            return NextBlock::none();
        };
        let width = NC.min(cols.end - next_start);
        let kc = KC.min(p.depth - next_q * KC);
        NextBlock {
            panels: p.panels_from(next_q, next_start).as_ptr(),
            panel_len: kc * p.nr,
            count: width.div_ceil(p.nr),
            fetched: 0,
        }
    }

    /// The panel the next tile fetches, or null when all are on their way.
    #[inline]
    fn next_panel(&mut self) -> *const f32 {
        if self.fetched == self.count {
            return std::ptr::null();
        }
        self.fetched += 1;
        self.panels
            .wrapping_add((self.fetched - 1) * self.panel_len)
    }
}

/// The reference: a plain triple loop with f64 sums, for tests.
pub fn reference(a: View, b: View) -> Vec<f32> {
    let mut c = vec![0f32; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let s: f64 = (0..a.cols)
                .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                .sum();
            c[i * b.cols + j] = s as f32;
        }
    }
    c
}
