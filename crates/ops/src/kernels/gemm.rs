//! General matrix multiplication: `C = alpha·A·B + beta·C`, then an [`Epilogue`] (bias,
//! activation).
//!
//! One entry point, [`gemm`], serves MatMul, Gemm, Conv (im2col) and ConvTranspose for every
//! numeric element type:
//! - `f32` goes to runnx-sgemm's packed kernels (AVX-512/AVX2/portable, chosen at run time),
//!   which also take operands packed once at session creation ([`Lhs::Packed`],
//!   [`Rhs::Packed`]: Conv filters, MatMul/Gemm weights). `f64` goes to `matrixmultiply`.
//!   Neither threads on its own: this module splits C into tiles and runs them on the rayon pool
//!   the runtime installs, so GEMM never oversubscribes the cores the other ops are using, and
//!   nested calls (one GEMM per batch item, each on a rayon worker) just work.
//! - Integer types use a portable row-by-row loop with wrapping arithmetic (NumPy semantics).
//! - float16 and bfloat16 callers convert to f32, call this, and round back.
//!
//! The operands are enums ([`Lhs`], [`Rhs`]): unpacked, prepacked, or (B) produced block by
//! block; the epilogue is applied per tile while the tile is hot in cache. Callers do not change
//! when the backend does.
//!
//! Numerics: every output element is a sum of `k` products accumulated in the element type, in
//! an order that depends on blocking; for floats the error is bounded by about `k·ε·Σ|a·b|`
//! (ε the unit roundoff), as for any dot product.

use rayon::prelude::*;

use crate::OpError;

/// A read-only strided matrix: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
/// Strides may be zero (a broadcast row or column).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A view of `data`; fails when an element of the `rows x cols` matrix falls outside it.
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, OpError> {
        check_extent(data.len(), rows, cols, row_stride, col_stride)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A contiguous row-major matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self, OpError> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The same data seen transposed (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The view starting at row `i` (which must be at most `rows`).
    fn tail_from_row(self, i: usize) -> &'a [T] {
        if i >= self.rows || self.cols == 0 {
            &[]
        } else {
            &self.data[i * self.row_stride..]
        }
    }

    /// The view starting at column `j`.
    fn tail_from_col(self, j: usize) -> &'a [T] {
        if j >= self.cols || self.rows == 0 {
            &[]
        } else {
            &self.data[j * self.col_stride..]
        }
    }
}

/// The output matrix: row-major with unit column stride and a row stride of at least `cols`.
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn new(
        data: &'a mut [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Self, OpError> {
        if rows > 1 && row_stride < cols {
            return Err(OpError::invalid(format!(
                "gemm: output row stride {row_stride} is smaller than its {cols} columns"
            )));
        }
        check_extent(data.len(), rows, cols, row_stride, 1)?;
        Ok(MatMut {
            data,
            rows,
            cols,
            row_stride,
        })
    }

    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self, OpError> {
        Self::new(data, rows, cols, cols)
    }
}

fn check_extent(
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<(), OpError> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .zip((cols - 1).checked_mul(col_stride))
        .and_then(|(r, c)| r.checked_add(c));
    match last {
        Some(last) if last < len && last <= isize::MAX as usize => Ok(()),
        _ => Err(OpError::invalid(format!(
            "gemm: a {rows}x{cols} matrix with strides ({row_stride}, {col_stride}) does not fit in {len} elements"
        ))),
    }
}

/// The left-hand operand A (`m x k`).
pub enum Lhs<'a, T: GemmScalar> {
    Unpacked(MatRef<'a, T>),
    /// Packed once with [`GemmScalar::pack_lhs`] (a constant Conv filter).
    Packed(&'a T::PackedLhs),
}

/// The right-hand operand B (`k x n`).
pub enum Rhs<'a, T: GemmScalar> {
    Unpacked(MatRef<'a, T>),
    /// Packed once with [`GemmScalar::pack_rhs`] (constant MatMul/Gemm weights).
    Packed(&'a T::PackedRhs),
    /// Produced block by block on demand (Conv's im2col): never materialised whole, so each
    /// task's block stays in cache and building it runs in parallel with the products.
    Virtual(&'a dyn VirtualMatrix<T>),
}

// Derives would ask `T: Copy` of the packed types too; the variants only hold references.
impl<T: GemmScalar> Clone for Lhs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: GemmScalar> Copy for Lhs<'_, T> {}
impl<T: GemmScalar> Clone for Rhs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: GemmScalar> Copy for Rhs<'_, T> {}

impl<T: GemmScalar> Lhs<'_, T> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Lhs::Unpacked(m) => (m.rows, m.cols),
            Lhs::Packed(p) => p.shape(),
        }
    }
}

impl<T: GemmScalar> Rhs<'_, T> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Rhs::Unpacked(m) => (m.rows, m.cols),
            Rhs::Packed(p) => p.shape(),
            Rhs::Virtual(v) => (v.rows(), v.cols()),
        }
    }
}

/// A matrix packed for a type's fast kernels.
pub trait PackedMatrix: Send + Sync {
    /// `(rows, cols)` of the matrix before packing.
    fn shape(&self) -> (usize, usize);
}

/// The packed operand of a type that has no packed kernels: cannot be built.
pub enum NoPacking {}

impl PackedMatrix for NoPacking {
    fn shape(&self) -> (usize, usize) {
        match *self {}
    }
}

impl PackedMatrix for runnx_sgemm::PackedA {
    fn shape(&self) -> (usize, usize) {
        (self.rows(), self.depth())
    }
}

impl PackedMatrix for runnx_sgemm::PackedB {
    fn shape(&self) -> (usize, usize) {
        (self.depth(), self.cols())
    }
}

/// A matrix computed on demand, a block of columns at a time.
pub trait VirtualMatrix<T>: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Writes the block `rows x cols` into `out`, row-major (`out` has exactly
    /// `rows.len() · cols.len()` elements).
    fn fill(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, out: &mut [T]);

    /// Writes the block as panels of `width` columns, the packed layout of the f32 kernels
    /// (see `runnx_sgemm::BlockSource::fill_panels`); `false` when it cannot.
    fn fill_panels(
        &self,
        _rows: std::ops::Range<usize>,
        _cols: std::ops::Range<usize>,
        _width: usize,
        _out: &mut [T],
    ) -> bool {
        false
    }
}

/// A bias added to every output after `alpha·A·B + beta·C`.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a, T> {
    None,
    /// One value per row of C (Conv: per output channel); length `m`.
    PerRow(&'a [T]),
    /// One value per column of C (Gemm/MatMul+Add: per output feature); length `n`.
    PerColumn(&'a [T]),
}

/// An elementwise function applied last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation<T> {
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`.
    Clip {
        min: T,
        max: T,
    },
    /// `x` for `x >= 0`, else `alpha·x`.
    LeakyRelu {
        alpha: T,
    },
}

/// A matrix of C's shape added after the bias and before the activation (a residual
/// connection): element `(i, j)` is `data[i * row_stride + j]`.
#[derive(Clone, Copy, Debug)]
pub struct Residual<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
}

/// What happens to each output tile once its products are summed.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a, T> {
    pub bias: Bias<'a, T>,
    pub residual: Option<Residual<'a, T>>,
    pub activation: Activation<T>,
}

impl<'a, T> Epilogue<'a, T> {
    /// No bias, no activation.
    pub fn none() -> Self {
        Epilogue {
            bias: Bias::None,
            residual: None,
            activation: Activation::Identity,
        }
    }

    pub fn with_bias(bias: Bias<'a, T>) -> Self {
        Epilogue {
            bias,
            residual: None,
            activation: Activation::Identity,
        }
    }

    fn is_identity(&self) -> bool {
        matches!(
            (&self.bias, &self.residual, &self.activation),
            (Bias::None, None, Activation::Identity)
        )
    }
}

/// An element type GEMM supports. Integer arithmetic wraps.
pub trait GemmScalar: Copy + Send + Sync + PartialOrd + std::fmt::Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// Constant operands packed for this type's fast kernels ([`NoPacking`] when it has none).
    type PackedLhs: PackedMatrix;
    type PackedRhs: PackedMatrix;
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;

    /// A vector of `len` elements with unspecified contents, for an output written whole
    /// (recycled for f32: [`crate::kernels::buffers`]).
    fn output_buffer(len: usize) -> Vec<Self> {
        vec![Self::ZERO; len]
    }

    /// Packs a constant A once; `None` when this type has no packed kernels.
    fn pack_lhs(_a: MatRef<'_, Self>) -> Option<Self::PackedLhs> {
        None
    }

    /// Packs a constant B once; `None` when this type has no packed kernels.
    fn pack_rhs(_b: MatRef<'_, Self>) -> Option<Self::PackedRhs> {
        None
    }

    /// Computes the whole product with this type's packed kernels (shapes already checked);
    /// `false` when it has none and the generic tiles should run.
    fn packed_gemm(
        _alpha: Self,
        _a: Lhs<'_, Self>,
        _b: Rhs<'_, Self>,
        _beta: Self,
        _c: &mut MatMut<'_, Self>,
        _epilogue: &Epilogue<'_, Self>,
    ) -> bool {
        false
    }

    /// Computes one tile on the calling thread. The default is the portable loop.
    ///
    /// # Safety
    /// `tile.a` and `tile.b` must hold every element the strides address, and `tile.c` must point
    /// to `m` rows of `n` writable elements `rsc` apart that no other thread accesses meanwhile.
    unsafe fn tile_kernel(tile: &Tile<'_, Self>) {
        // SAFETY: forwarded from this function's contract.
        unsafe { portable_tile(tile) }
    }
}

/// One block of C to compute: `C[m x n] = alpha·A[m x k]·B[k x n] + beta·C`.
pub struct Tile<'a, T> {
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    beta: T,
    /// Starts at the tile's first row of A.
    a: &'a [T],
    rsa: usize,
    csa: usize,
    /// Starts at the tile's first column of B.
    b: &'a [T],
    rsb: usize,
    csb: usize,
    c: *mut T,
    rsc: usize,
}

/// The reference kernel: row by row, `C[i,:] += (alpha·A[i,p])·B[p,:]`, which vectorises when
/// B's rows are contiguous. Also the scalar reference the fast kernels are tested against.
///
/// # Safety
/// See [`GemmScalar::tile_kernel`].
unsafe fn portable_tile<T: GemmScalar>(t: &Tile<'_, T>) {
    for i in 0..t.m {
        // SAFETY: row `i` of the tile is `n` elements at `c + i·rsc`, owned by this call.
        let c_row = unsafe { std::slice::from_raw_parts_mut(t.c.add(i * t.rsc), t.n) };
        if t.beta == T::ZERO {
            c_row.fill(T::ZERO);
        } else if t.beta != T::ONE {
            c_row.iter_mut().for_each(|v| *v = v.mul(t.beta));
        }
        for p in 0..t.k {
            let a_ip = t.alpha.mul(t.a[i * t.rsa + p * t.csa]);
            let b_row = &t.b[p * t.rsb..];
            if t.csb == 1 {
                for (c, &b) in c_row.iter_mut().zip(&b_row[..t.n]) {
                    *c = c.add(a_ip.mul(b));
                }
            } else {
                for (j, c) in c_row.iter_mut().enumerate() {
                    *c = c.add(a_ip.mul(b_row[j * t.csb]));
                }
            }
        }
    }
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    type PackedLhs = runnx_sgemm::PackedA;
    type PackedRhs = runnx_sgemm::PackedB;
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn mul(self, other: Self) -> Self {
        self * other
    }
    fn output_buffer(len: usize) -> Vec<f32> {
        crate::kernels::buffers::f32_buffer(len)
    }
    fn pack_lhs(a: MatRef<'_, Self>) -> Option<Self::PackedLhs> {
        Some(runnx_sgemm::PackedA::new(sgemm_view(a)))
    }
    fn pack_rhs(b: MatRef<'_, Self>) -> Option<Self::PackedRhs> {
        Some(runnx_sgemm::PackedB::new(sgemm_view(b)))
    }
    fn packed_gemm(
        alpha: Self,
        a: Lhs<'_, Self>,
        b: Rhs<'_, Self>,
        beta: Self,
        c: &mut MatMut<'_, Self>,
        epilogue: &Epilogue<'_, Self>,
    ) -> bool {
        sgemm(alpha, a, b, beta, c, epilogue)
    }
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    type PackedLhs = NoPacking;
    type PackedRhs = NoPacking;
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn mul(self, other: Self) -> Self {
        self * other
    }
    unsafe fn tile_kernel(t: &Tile<'_, Self>) {
        // SAFETY: the caller guarantees the strides stay inside `a`, `b` and the C tile
        // (checked by `MatRef::new`/`MatMut::new`, and `isize`-sized); matrixmultiply
        // does not read C when beta is zero.
        unsafe {
            matrixmultiply::dgemm(
                t.m,
                t.k,
                t.n,
                t.alpha,
                t.a.as_ptr(),
                t.rsa as isize,
                t.csa as isize,
                t.b.as_ptr(),
                t.rsb as isize,
                t.csb as isize,
                t.beta,
                t.c,
                t.rsc as isize,
                1,
            )
        }
    }
}

macro_rules! int_scalar {
    ($($t:ty),*) => {$(
        impl GemmScalar for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            type PackedLhs = NoPacking;
            type PackedRhs = NoPacking;
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            fn mul(self, other: Self) -> Self {
                self.wrapping_mul(other)
            }
        }
    )*};
}

int_scalar!(i8, u8, i16, u16, i32, u32, i64, u64);

/// `C = alpha·A·B + beta·C`, then `epilogue`, on the current rayon pool.
///
/// When `beta` is zero C is write-only (its old contents, even NaN, are ignored). Shapes must
/// agree (`A: m x k`, `B: k x n`, `C: m x n`) and the bias must have `m` (per row) or `n` (per
/// column) values; otherwise an error is returned and C is untouched.
pub fn gemm<T: GemmScalar>(
    alpha: T,
    a: Lhs<'_, T>,
    b: Rhs<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    epilogue: &Epilogue<'_, T>,
) -> Result<(), OpError> {
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    if kb != k || c.rows != m || c.cols != n {
        return Err(OpError::invalid(format!(
            "gemm: cannot multiply {m}x{k} by {kb}x{n} into {}x{}",
            c.rows, c.cols
        )));
    }
    match epilogue.bias {
        Bias::PerRow(v) if v.len() != m => {
            return Err(OpError::invalid(format!(
                "gemm: {} row biases for {m} rows",
                v.len()
            )));
        }
        Bias::PerColumn(v) if v.len() != n => {
            return Err(OpError::invalid(format!(
                "gemm: {} column biases for {n} columns",
                v.len()
            )));
        }
        _ => {}
    }
    if let Some(r) = epilogue.residual {
        if m > 0 && n > 0 && (r.row_stride < n || r.data.len() < (m - 1) * r.row_stride + n) {
            return Err(OpError::invalid(format!(
                "gemm: residual of {} elements (row stride {}) does not cover {m}x{n}",
                r.data.len(),
                r.row_stride
            )));
        }
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let mut c = c;
    if T::packed_gemm(alpha, a, b, beta, &mut c, epilogue) {
        return Ok(());
    }
    let unpackable = || OpError::invalid("gemm: a packed operand without packed kernels");
    let Lhs::Unpacked(a) = a else {
        return Err(unpackable());
    };
    let b = match b {
        Rhs::Unpacked(b) => Source::Matrix(b),
        Rhs::Virtual(v) => Source::Virtual(v),
        Rhs::Packed(_) => return Err(unpackable()),
    };
    if m == 1 || n == 1 {
        let materialised;
        let b = match b {
            Source::Matrix(b) => b,
            Source::Virtual(v) => {
                materialised = materialise(v);
                MatRef::row_major(&materialised, k, n)?
            }
        };
        gemv_case(alpha, a, b, beta, c, epilogue);
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let materialised;
    let ((m_parts, n_parts), b) = match b {
        Source::Matrix(b) => (partition(m, n, k, threads), Source::Matrix(b)),
        Source::Virtual(v) => match partition_virtual(m, n, k, threads) {
            // Splitting rows would make every part rebuild the same columns: build them once.
            (m_parts, _) if m_parts > 1 => {
                materialised = materialise(v);
                let b = MatRef::row_major(&materialised, k, n)?;
                (partition(m, n, k, threads), Source::Matrix(b))
            }
            parts => (parts, Source::Virtual(v)),
        },
    };
    let job = Job {
        alpha,
        beta,
        a,
        b,
        c: SendPtr(c.data.as_mut_ptr()),
        rsc: c.row_stride,
        epilogue,
    };
    let tile = |t: usize| job.run(part(m, m_parts, t / n_parts), part(n, n_parts, t % n_parts));
    if m_parts * n_parts > 1
        && threads > 1
        && m.saturating_mul(n).saturating_mul(k) >= MIN_PARALLEL_MACS
    {
        (0..m_parts * n_parts).into_par_iter().for_each(tile);
    } else {
        (0..m_parts * n_parts).for_each(tile);
    }
    Ok(())
}

/// The whole of a virtual matrix, built in parallel by row blocks when large.
fn materialise<T: GemmScalar>(v: &dyn VirtualMatrix<T>) -> Vec<T> {
    let (k, n) = (v.rows(), v.cols());
    let mut data = vec![T::ZERO; k * n];
    if data.is_empty() {
        return data;
    }
    let rows_per_task = (MIN_PARALLEL_MACS / 8 / n).max(1);
    let fill = |(i, block): (usize, &mut [T])| {
        let start = i * rows_per_task;
        v.fill(start..start + block.len() / n, 0..n, block);
    };
    if rayon::current_num_threads() > 1 && k > rows_per_task {
        data.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(fill);
    } else {
        fill((0, &mut data));
    }
    data
}

/// The matrix-vector cases (`m = 1` or `n = 1`), where packing for the blocked kernels would
/// cost as much as the product: `C = alpha·xᵀ·M + beta·C` for a vector `x` and matrix `M`.
fn gemv_case<T: GemmScalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
    e: &Epilogue<'_, T>,
) {
    let (m, n) = (a.rows, b.cols);
    // m = 1: x is A's row and M is B. n = 1: x is B's column and M is Aᵀ.
    let (x, x_stride, matrix) = if m == 1 {
        (a.data, a.col_stride, b)
    } else {
        (b.data, b.row_stride, a.t())
    };
    let product = vector_matrix(x, x_stride, matrix);
    // C's elements in order: one row of n (m = 1), or one column of m (n = 1).
    let stride = if m == 1 { 1 } else { c.row_stride };
    for (j, &p) in product.iter().enumerate() {
        let cj = &mut c.data[j * stride];
        let prior = if beta == T::ZERO {
            T::ZERO
        } else {
            cj.mul(beta)
        };
        *cj = alpha.mul(p).add(prior);
    }
    if !e.is_identity() {
        for i in 0..m {
            apply_epilogue(e, &mut c.data[i * c.row_stride..][..n], i, 0..n);
        }
    }
}

/// `xᵀ·M` for `x` of `M.rows` elements `x_stride` apart. Memory-bound: each element of M is read
/// once, from contiguous rows (axpy) or contiguous columns (dot products) when M has either.
/// Parallel over column blocks when large.
fn vector_matrix<T: GemmScalar>(x: &[T], x_stride: usize, m: MatRef<'_, T>) -> Vec<T> {
    let (k, n) = (m.rows, m.cols);
    let mut out = vec![T::ZERO; n];
    let block = |(j0, out): (usize, &mut [T])| {
        let x_at = |p: usize| x[p * x_stride];
        if m.col_stride == 1 {
            for p in 0..k {
                let (xp, row) = (x_at(p), &m.data[p * m.row_stride + j0..][..out.len()]);
                out.iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| *o = o.add(xp.mul(v)));
            }
        } else if m.row_stride == 1 && x_stride == 1 {
            for (j, o) in out.iter_mut().enumerate() {
                *o = dot(&x[..k], &m.data[(j0 + j) * m.col_stride..][..k]);
            }
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                let col = (j0 + j) * m.col_stride;
                *o = (0..k).fold(T::ZERO, |acc, p| {
                    acc.add(x_at(p).mul(m.data[p * m.row_stride + col]))
                });
            }
        }
    };
    let threads = rayon::current_num_threads();
    if threads > 1 && n * k >= MIN_PARALLEL_MACS && n >= 2 * GEMV_MIN_COLS {
        let chunk = n.div_ceil(2 * threads).max(GEMV_MIN_COLS);
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| block((i * chunk, o)));
    } else {
        block((0, &mut out));
    }
    out
}

/// The smallest column block of a parallel matrix-vector product.
const GEMV_MIN_COLS: usize = 64;

/// A dot product with eight independent accumulators, so that it vectorises.
fn dot<T: GemmScalar>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .fold(T::ZERO, |s, (&x, &y)| s.add(x.mul(y)));
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] = acc[l].add(x[l].mul(y[l]));
        }
    }
    acc.iter().fold(tail, |s, &v| s.add(v))
}

/// Below this many multiply-adds a GEMM runs on one thread (rayon's overhead would dominate).
const MIN_PARALLEL_MACS: usize = 1 << 18;
/// The smallest tile worth a task: each task repacks its share of A and B.
const MIN_TILE_ROWS: usize = 16;
const MIN_TILE_COLS: usize = 64;

/// How many parts to split C's rows and columns into. Splitting rows makes every task repack
/// all of B (`k·n`), splitting columns repacks A (`m·k`), so the longer side is split first.
fn partition(m: usize, n: usize, k: usize, threads: usize) -> (usize, usize) {
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    let tasks = threads.min(macs / (MIN_PARALLEL_MACS / 2));
    if threads <= 1 || macs < MIN_PARALLEL_MACS || tasks <= 1 {
        return (1, 1);
    }
    let (mut mp, mut np) = (1, 1);
    while mp * np < tasks {
        let (rows, cols) = (m / mp, n / np);
        let can_split_rows = rows >= 2 * MIN_TILE_ROWS;
        let can_split_cols = cols >= 2 * MIN_TILE_COLS;
        if can_split_rows && (rows >= cols || !can_split_cols) {
            mp *= 2;
        } else if can_split_cols {
            np *= 2;
        } else {
            break;
        }
    }
    (mp, np)
}

/// A virtual block's columns are split down to this width before rows are split.
const MIN_VIRTUAL_TILE_COLS: usize = 32;
/// The most elements of a virtual B block one task builds (512 KiB of f32): small enough that
/// the block is still in L2 when the kernel packs it (measured: a 7 MB im2col block for
/// ResNet-18's first conv ran the GEMM at half speed), wide enough that repacking A for every
/// block costs little.
const VIRTUAL_BLOCK_ELEMENTS: usize = 1 << 17;

/// Tiles for a virtual B: as few column blocks as the block size limit allows, split further
/// (columns first: a row split makes each part rebuild the same block, see `gemm`) until every
/// thread has work.
fn partition_virtual(m: usize, n: usize, k: usize, threads: usize) -> (usize, usize) {
    let block_cols = (VIRTUAL_BLOCK_ELEMENTS / k.max(1)).max(MIN_TILE_COLS);
    let (mut mp, mut np) = (1, n.div_ceil(block_cols));
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    let tasks = threads.min(macs / (MIN_PARALLEL_MACS / 2));
    while mp * np < tasks {
        if n / np >= 2 * MIN_VIRTUAL_TILE_COLS {
            np *= 2;
        } else if m / mp >= 2 * MIN_TILE_ROWS {
            mp *= 2;
        } else {
            break;
        }
    }
    (mp, np.min(n))
}

/// Part `i` of `len` split into `parts` nearly equal ranges.
fn part(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    len * i / parts..len * (i + 1) / parts
}

/// An output's base pointer, shared by tasks that write disjoint parts of it (GEMM tiles of C,
/// Winograd's output tiles).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: tasks only dereference the pointer for disjoint parts of the output (see `Job::run`
// and `winograd::Winograd3x3::forward`), and the `&mut` borrow of it outlives every task
// because the caller joins them before returning.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Where a task reads its columns of B.
enum Source<'a, T> {
    Matrix(MatRef<'a, T>),
    Virtual(&'a dyn VirtualMatrix<T>),
}

struct Job<'a, T> {
    alpha: T,
    beta: T,
    a: MatRef<'a, T>,
    b: Source<'a, T>,
    c: SendPtr<T>,
    rsc: usize,
    epilogue: &'a Epilogue<'a, T>,
}

impl<T: GemmScalar> Job<'_, T> {
    /// Computes the tile of C at `rows x cols`. Tiles given to concurrent calls must not overlap.
    fn run(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        // SAFETY: `rows` and `cols` lie inside C, whose extent `MatMut::new` checked, so the
        // offset stays in its allocation.
        let c = unsafe { self.c.0.add(rows.start * self.rsc + cols.start) };
        let block;
        let (b, rsb, csb) = match &self.b {
            Source::Matrix(b) => (b.tail_from_col(cols.start), b.row_stride, b.col_stride),
            Source::Virtual(v) => {
                let mut data = vec![T::ZERO; self.a.cols * cols.len()];
                v.fill(0..self.a.cols, cols.clone(), &mut data);
                block = data;
                (&block[..], cols.len(), 1)
            }
        };
        let tile = Tile {
            m: rows.len(),
            n: cols.len(),
            k: self.a.cols,
            alpha: self.alpha,
            beta: self.beta,
            a: self.a.tail_from_row(rows.start),
            rsa: self.a.row_stride,
            csa: self.a.col_stride,
            b,
            rsb,
            csb,
            c,
            rsc: self.rsc,
        };
        // SAFETY: A and B extents were checked by `MatRef::new` (a virtual block is exactly
        // `k x cols` with unit column stride); the C tile is in bounds (above) and disjoint from
        // every other task's tile.
        unsafe { T::tile_kernel(&tile) };
        if !self.epilogue.is_identity() {
            for i in 0..tile.m {
                // SAFETY: one row of this task's tile, not aliased while the slice lives.
                let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * self.rsc), tile.n) };
                apply_epilogue(self.epilogue, row, rows.start + i, cols.clone());
            }
        }
    }
}

/// Applies the bias, residual and activation to `row`, the columns `cols` of C's row `i`, in
/// one pass (three separate passes cost 9% of ResNet-18's time).
fn apply_epilogue<T: GemmScalar>(
    e: &Epilogue<'_, T>,
    row: &mut [T],
    i: usize,
    cols: std::ops::Range<usize>,
) {
    match e.activation {
        Activation::Identity => epilogue_pass(e, row, i, cols, |v| v),
        Activation::Relu => epilogue_pass(e, row, i, cols, relu),
        Activation::Clip { min, max } => epilogue_pass(e, row, i, cols, |v| clip(v, min, max)),
        Activation::LeakyRelu { alpha } => epilogue_pass(e, row, i, cols, |v| leaky_relu(v, alpha)),
    }
}

/// [`apply_epilogue`] for one activation function, one loop per bias/residual combination so
/// that each vectorises.
#[inline(always)]
fn epilogue_pass<T: GemmScalar>(
    e: &Epilogue<'_, T>,
    row: &mut [T],
    i: usize,
    cols: std::ops::Range<usize>,
    act: impl Fn(T) -> T,
) {
    let residual = e
        .residual
        .map(|r| &r.data[i * r.row_stride + cols.start..][..cols.len()]);
    match (e.bias, residual) {
        (Bias::None, None) => row.iter_mut().for_each(|v| *v = act(*v)),
        (Bias::None, Some(z)) => row.iter_mut().zip(z).for_each(|(v, &z)| *v = act(v.add(z))),
        (Bias::PerRow(b), None) => {
            let b = b[i];
            row.iter_mut().for_each(|v| *v = act(v.add(b)));
        }
        (Bias::PerRow(b), Some(z)) => {
            let b = b[i];
            row.iter_mut()
                .zip(z)
                .for_each(|(v, &z)| *v = act(v.add(b).add(z)));
        }
        (Bias::PerColumn(b), None) => row
            .iter_mut()
            .zip(&b[cols])
            .for_each(|(v, &b)| *v = act(v.add(b))),
        (Bias::PerColumn(b), Some(z)) => row
            .iter_mut()
            .zip(&b[cols])
            .zip(z)
            .for_each(|((v, &b), &z)| *v = act(v.add(b).add(z))),
    }
}

/// `max(v, 0)`; NaN stays NaN.
#[inline(always)]
fn relu<T: GemmScalar>(v: T) -> T {
    if v < T::ZERO {
        T::ZERO
    } else {
        v
    }
}

/// `v` clamped to `[min, max]`; NaN stays NaN.
#[inline(always)]
fn clip<T: GemmScalar>(v: T, min: T, max: T) -> T {
    if v < min {
        min
    } else if v > max {
        max
    } else {
        v
    }
}

/// `v` for `v >= 0`, else `alpha·v`.
#[inline(always)]
fn leaky_relu<T: GemmScalar>(v: T, alpha: T) -> T {
    if v < T::ZERO {
        v.mul(alpha)
    } else {
        v
    }
}

impl<T: GemmScalar> Activation<T> {
    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, v: T) -> T {
        match self {
            Activation::Identity => v,
            Activation::Relu => relu(v),
            Activation::Clip { min, max } => clip(v, min, max),
            Activation::LeakyRelu { alpha } => leaky_relu(v, alpha),
        }
    }
}

/// Applies `activation` to every element of `values`.
pub fn apply_activation<T: GemmScalar>(activation: Activation<T>, values: &mut [T]) {
    match activation {
        Activation::Identity => {}
        Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Clip { min, max } => values.iter_mut().for_each(|v| *v = clip(*v, min, max)),
        Activation::LeakyRelu { alpha } => {
            values.iter_mut().for_each(|v| *v = leaky_relu(*v, alpha))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f32: runnx-sgemm's packed kernels

fn sgemm_view(m: MatRef<'_, f32>) -> runnx_sgemm::View<'_> {
    runnx_sgemm::View {
        data: m.data,
        rows: m.rows,
        cols: m.cols,
        row_stride: m.row_stride,
        col_stride: m.col_stride,
    }
}

/// Below this many multiply-adds an f32 product stays on one thread. The session's workers stay
/// awake through a run (`runtime::threads`), so a split pays off early: the MNIST MLP at batch 8
/// (an 8x784x128 product, 0.8 M multiply-adds) ran 0.017-0.018 ms on two threads with the split
/// and 0.020-0.021 without (noisy machine; the one-thread run is 0.020).
const SGEMM_MIN_PARALLEL_MACS: usize = 1 << 18;

/// A product with a packed B of at least this many elements splits over threads however few its
/// multiply-adds: with a row or a few, it is bound by reading B from cache, and each thread then
/// reads its own half. MNIST MLP's 784x128 layer at batch 1 (0.1 M multiply-adds): 5.1 µs on one
/// thread, 3.6 on two.
const SGEMM_MIN_PARALLEL_PACKED_B: usize = 1 << 16;

/// Below this many multiply-adds a parallel product makes one task per thread, above it two
/// (which even out tiles of uneven cost). With one task per thread each thread keeps working on
/// the same part of B run after run, in its own cache, where four tasks land on either thread:
/// 784x128 at batch 1 took 5.5 µs in four tasks, 3.6 in two; 8x576x128 7.5 and 6.8.
const SGEMM_TWO_TASKS_PER_THREAD_MACS: usize = 1 << 23;

/// Part `i` of `len` rows (or columns) split into `parts` at multiples of `panel`, as evenly as
/// whole panels allow. (Rounding each part up to whole panels left the last part short: 784
/// columns in four went 224, 224, 224, 112, and two threads then split them 448 to 336.)
pub(crate) fn panel_part(
    len: usize,
    panel: usize,
    parts: usize,
    i: usize,
) -> std::ops::Range<usize> {
    let panels = len.div_ceil(panel.max(1));
    let at = |j: usize| (panels * j / parts.max(1) * panel).min(len);
    at(i)..at(i + 1)
}

/// A virtual matrix as a block source for runnx-sgemm.
struct SgemmSource<'a>(&'a dyn VirtualMatrix<f32>);

impl runnx_sgemm::BlockSource for SgemmSource<'_> {
    fn rows(&self) -> usize {
        self.0.rows()
    }
    fn cols(&self) -> usize {
        self.0.cols()
    }
    fn fill(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, out: &mut [f32]) {
        self.0.fill(rows, cols, out)
    }
    fn fill_panels(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        width: usize,
        out: &mut [f32],
    ) -> bool {
        self.0.fill_panels(rows, cols, width, out)
    }
}

/// The f32 product on runnx-sgemm, split into tasks by column blocks (or row blocks when C has
/// few columns) at the kernel's panel boundaries. Returns `false` for an unpacked
/// matrix-vector product, which `gemv_case` does without packing.
fn sgemm(
    alpha: f32,
    a: Lhs<'_, f32>,
    b: Rhs<'_, f32>,
    beta: f32,
    c: &mut MatMut<'_, f32>,
    epilogue: &Epilogue<'_, f32>,
) -> bool {
    let (m, n, k) = (c.rows, c.cols, a.shape().1);
    let any_packed = matches!(a, Lhs::Packed(_)) || matches!(b, Rhs::Packed(_));
    if !any_packed && (m == 1 || n == 1) {
        return false;
    }
    let source;
    let lhs = match a {
        Lhs::Packed(p) => runnx_sgemm::Lhs::Packed(p),
        Lhs::Unpacked(v) => runnx_sgemm::Lhs::View(sgemm_view(v)),
    };
    let rhs = match b {
        Rhs::Packed(p) => runnx_sgemm::Rhs::Packed(p),
        Rhs::Unpacked(v) => runnx_sgemm::Rhs::View(sgemm_view(v)),
        Rhs::Virtual(v) => {
            source = SgemmSource(v);
            runnx_sgemm::Rhs::Source(&source)
        }
    };
    let kernel = runnx_sgemm::kernel();
    let threads = rayon::current_num_threads();
    let macs = m.saturating_mul(n).saturating_mul(k.max(1));
    let packed_b_len = match &b {
        Rhs::Packed(_) => k.saturating_mul(n),
        _ => 0,
    };
    let tasks = if threads < 2
        || (macs < SGEMM_MIN_PARALLEL_MACS && packed_b_len < SGEMM_MIN_PARALLEL_PACKED_B)
    {
        1
    } else if macs < SGEMM_TWO_TASKS_PER_THREAD_MACS {
        threads
    } else {
        2 * threads
    };
    // A task packs the whole of whichever operand it does not split: splitting columns repacks
    // A in every task, splitting rows repacks B (or rebuilds an im2col block). So split the
    // side whose other operand is packed already, or else the one that leaves the smaller
    // operand to repack.
    let (row_tiles, col_tiles) = (m.div_ceil(kernel.mr), n.div_ceil(kernel.nr));
    let rows_first = match (&a, &b) {
        (Lhs::Packed(_), _) | (_, Rhs::Virtual(_)) => false,
        // With few row tiles the row parts come out uneven, and each one streams all of B
        // (ResNet's transposed 7x7-plane convs: 49 rows in parts of 24, 24 and 1, each reading
        // a 9.4 MB filter). Columns split evenly, for packing the small A in every task.
        (_, Rhs::Packed(_)) => row_tiles >= 2 * tasks,
        _ => m > n,
    };
    let (row_parts, col_parts) = if rows_first && row_tiles >= tasks {
        (tasks, 1)
    } else if col_tiles >= tasks {
        (1, tasks)
    } else if row_tiles >= tasks {
        // Every row part of an im2col B builds all of B again: one part per thread, not two
        // (ResNet-18's 7x7-plane convs at two threads: 1.66 -> 1.3 ms).
        let parts = if matches!(b, Rhs::Virtual(_)) {
            threads
        } else {
            tasks
        };
        (parts, 1)
    } else {
        (1, 1)
    };
    let (ptr, rsc) = (SendPtr(c.data.as_mut_ptr()), c.row_stride);
    // Straight into C, then scaled by alpha in cache when it is not 1 (attention's scaled
    // Q·Kᵀ); C's prior values are kept only as an exact accumulation.
    let direct = beta == 0.0 || (alpha == 1.0 && beta == 1.0);
    let task = |t: usize| {
        let rows = panel_part(m, kernel.mr, row_parts, t / col_parts);
        let cols = panel_part(n, kernel.nr, col_parts, t % col_parts);
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        let ptr = ptr;
        // SAFETY: the tile lies inside C (MatMut checked its extent) and tasks' tiles are
        // disjoint.
        let tile = unsafe { ptr.0.add(rows.start * rsc + cols.start) };
        let row_of = |i: usize| {
            // SAFETY: row i of this task's tile, not aliased while the slice lives.
            unsafe { std::slice::from_raw_parts_mut(tile.add(i * rsc), cols.len()) }
        };
        if direct {
            // SAFETY: as above; the block is this task's alone.
            unsafe {
                runnx_sgemm::gemm_raw(
                    kernel,
                    lhs,
                    rhs,
                    rows.clone(),
                    cols.clone(),
                    tile,
                    rsc,
                    beta == 1.0,
                )
            };
            if alpha != 1.0 {
                for i in 0..rows.len() {
                    row_of(i).iter_mut().for_each(|v| *v *= alpha);
                }
            }
        } else {
            let mut product = vec![0f32; rows.len() * cols.len()];
            runnx_sgemm::gemm_with(
                kernel,
                lhs,
                rhs,
                rows.clone(),
                cols.clone(),
                runnx_sgemm::Output {
                    data: &mut product,
                    row_stride: cols.len(),
                },
                false,
            );
            for (i, p) in product.chunks_exact(cols.len()).enumerate() {
                for (v, &p) in row_of(i).iter_mut().zip(p) {
                    *v = if beta == 0.0 {
                        alpha * p
                    } else {
                        alpha * p + beta * *v
                    };
                }
            }
        }
        if !epilogue.is_identity() {
            for i in 0..rows.len() {
                apply_epilogue(epilogue, row_of(i), rows.start + i, cols.clone());
            }
        }
    };
    let count = row_parts * col_parts;
    if count > 1 {
        (0..count).into_par_iter().for_each(task);
    } else {
        task(0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Plain triple loop in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &[f32],
        b: &[f32],
        beta: f32,
        c: &[f32],
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
                let prior = if beta == 0.0 {
                    0.0
                } else {
                    beta as f64 * c[i * n + j] as f64
                };
                out[i * n + j] = (alpha as f64 * dot + prior) as f32;
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], k: usize) {
        let tol = 1e-5 * (k as f32 + 1.0);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "at {i}: {g} vs {w}");
        }
    }

    #[test]
    fn f32_matches_reference_on_awkward_sizes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 3),
            (17, 7, 1000),
            (1, 1000, 17),
            (130, 300, 70),
            (3, 5, 0),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let c0 = values(m * n, 3);
            for &(alpha, beta) in &[(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)] {
                let mut c = c0.clone();
                pool.install(|| {
                    gemm(
                        alpha,
                        Lhs::Unpacked(MatRef::row_major(&a, m, k).unwrap()),
                        Rhs::Unpacked(MatRef::row_major(&b, k, n).unwrap()),
                        beta,
                        MatMut::row_major(&mut c, m, n).unwrap(),
                        &Epilogue::none(),
                    )
                })
                .unwrap();
                assert_close(&c, &reference(m, n, k, alpha, &a, &b, beta, &c0), k);
            }
        }
    }

    /// The product of strided views, in f64.
    fn reference_views(a: MatRef<'_, f32>, b: MatRef<'_, f32>) -> Vec<f32> {
        let at = |m: &MatRef<'_, f32>, i: usize, j: usize| {
            m.data[i * m.row_stride + j * m.col_stride] as f64
        };
        let mut out = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| at(&a, i, p) * at(&b, p, j))
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn vector_cases_in_every_layout() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 7, 17),
            (1, 1000, 300),
            (17, 1, 7),
            (1000, 1, 300),
            (1, 1, 1000),
        ] {
            let a_data = values(m * k, 5);
            let b_data = values(k * n, 6);
            fn layouts(data: &[f32], rows: usize, cols: usize) -> [MatRef<'_, f32>; 2] {
                [
                    MatRef::row_major(data, rows, cols).unwrap(),
                    MatRef::row_major(data, cols, rows).unwrap().t(),
                ]
            }
            for a in layouts(&a_data, m, k) {
                for b in layouts(&b_data, k, n) {
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| {
                        gemm(
                            1.0,
                            Lhs::Unpacked(a),
                            Rhs::Unpacked(b),
                            0.0,
                            MatMut::row_major(&mut c, m, n).unwrap(),
                            &Epilogue::none(),
                        )
                    })
                    .unwrap();
                    assert_close(&c, &reference_views(a, b), k);
                }
            }
        }
        // alpha, beta and a strided C column with a bias.
        let a = [1f32, 2.0, 3.0, 4.0];
        let b = [10f32, 1.0];
        let mut c = [1f32, -1.0, 2.0, -1.0];
        gemm(
            2.0,
            Lhs::Unpacked(MatRef::row_major(&a, 2, 2).unwrap()),
            Rhs::Unpacked(MatRef::row_major(&b, 2, 1).unwrap()),
            3.0,
            MatMut::new(&mut c, 2, 1, 2).unwrap(),
            &Epilogue::with_bias(Bias::PerRow(&[100.0, 200.0])),
        )
        .unwrap();
        assert_eq!(
            c,
            [
                2.0 * 12.0 + 3.0 + 100.0,
                -1.0,
                2.0 * 34.0 + 6.0 + 200.0,
                -1.0
            ]
        );
    }

    /// A dense matrix served block by block, to test the virtual path against the plain one.
    struct Blocks<'a>(MatRef<'a, f32>);

    impl VirtualMatrix<f32> for Blocks<'_> {
        fn rows(&self) -> usize {
            self.0.rows
        }
        fn cols(&self) -> usize {
            self.0.cols
        }
        fn fill(
            &self,
            rows: std::ops::Range<usize>,
            cols: std::ops::Range<usize>,
            out: &mut [f32],
        ) {
            let width = cols.len();
            for (i, r) in rows.enumerate() {
                for (j, c) in cols.clone().enumerate() {
                    out[i * width + j] = self.0.data[r * self.0.row_stride + c * self.0.col_stride];
                }
            }
        }
    }

    #[test]
    fn virtual_operand_matches_dense() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        // Wide (column blocks), narrow and tall (built once, rows split), vector, too deep for
        // one block.
        for &(m, n, k) in &[
            (64, 3000, 100),
            (512, 40, 300),
            (1, 300, 50),
            (20, 700, 5000),
        ] {
            let a = values(m * k, 7);
            let b = values(k * n, 8);
            let bias = values(m, 9);
            let run = |rhs: Rhs<'_, f32>| {
                let mut c = vec![0f32; m * n];
                pool.install(|| {
                    gemm(
                        1.0,
                        Lhs::Unpacked(MatRef::row_major(&a, m, k).unwrap()),
                        rhs,
                        0.0,
                        MatMut::row_major(&mut c, m, n).unwrap(),
                        &Epilogue::with_bias(Bias::PerRow(&bias)),
                    )
                })
                .unwrap();
                c
            };
            let dense = MatRef::row_major(&b, k, n).unwrap();
            let want = run(Rhs::Unpacked(dense));
            assert_close(&run(Rhs::Virtual(&Blocks(dense))), &want, k);
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = [1f32, 2.0];
        let b = [3f32, 4.0];
        let mut c = [f32::NAN];
        gemm(
            1.0,
            Lhs::Unpacked(MatRef::row_major(&a, 1, 2).unwrap()),
            Rhs::Unpacked(MatRef::row_major(&b, 2, 1).unwrap()),
            0.0,
            MatMut::row_major(&mut c, 1, 1).unwrap(),
            &Epilogue::none(),
        )
        .unwrap();
        assert_eq!(c, [11.0]);
    }

    #[test]
    fn transposed_views_and_epilogue() {
        // A = [[1, 2], [3, 4]] stored transposed, B = I, bias per row and relu.
        let a_t = [1f64, 3.0, 2.0, 4.0];
        let b = [1f64, 0.0, 0.0, 1.0];
        let mut c = [0f64; 4];
        let bias = [-2.5, 0.0];
        let a = MatRef::row_major(&a_t, 2, 2).unwrap().t();
        gemm(
            1.0,
            Lhs::Unpacked(a),
            Rhs::Unpacked(MatRef::row_major(&b, 2, 2).unwrap()),
            0.0,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            &Epilogue {
                residual: None,
                bias: Bias::PerRow(&bias),
                activation: Activation::Relu,
            },
        )
        .unwrap();
        assert_eq!(c, [0.0, 0.0, 3.0, 4.0]);

        let col_bias = [10.0, 20.0];
        gemm(
            1.0,
            Lhs::Unpacked(a),
            Rhs::Unpacked(MatRef::row_major(&b, 2, 2).unwrap()),
            0.0,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            &Epilogue {
                residual: None,
                bias: Bias::PerColumn(&col_bias),
                activation: Activation::Clip {
                    min: 0.0,
                    max: 22.0,
                },
            },
        )
        .unwrap();
        assert_eq!(c, [11.0, 22.0, 13.0, 22.0]);
    }

    #[test]
    fn integers_wrap() {
        let a = [200u8, 1];
        let b = [2u8, 3];
        let mut c = [0u8];
        gemm(
            1,
            Lhs::Unpacked(MatRef::row_major(&a, 1, 2).unwrap()),
            Rhs::Unpacked(MatRef::row_major(&b, 2, 1).unwrap()),
            0,
            MatMut::row_major(&mut c, 1, 1).unwrap(),
            &Epilogue::none(),
        )
        .unwrap();
        assert_eq!(c, [((400 + 3) % 256) as u8]);

        let a: Vec<i64> = (0..6).collect();
        let b: Vec<i64> = (0..6).collect();
        let mut c = vec![1i64; 4];
        // [[0,1,2],[3,4,5]] x [[0,1],[2,3],[4,5]] + C
        gemm(
            1,
            Lhs::Unpacked(MatRef::row_major(&a, 2, 3).unwrap()),
            Rhs::Unpacked(MatRef::row_major(&b, 3, 2).unwrap()),
            1,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            &Epilogue::none(),
        )
        .unwrap();
        assert_eq!(c, [11, 14, 29, 41]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = [0f32; 6];
        assert!(MatRef::row_major(&a, 2, 4).is_err());
        assert!(MatRef::new(&a, 2, 3, 3, 1).is_ok());
        let mut c = [0f32; 4];
        let r = gemm(
            1.0,
            Lhs::Unpacked(MatRef::row_major(&a, 2, 3).unwrap()),
            Rhs::Unpacked(MatRef::row_major(&a, 2, 3).unwrap()),
            0.0,
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            &Epilogue::none(),
        );
        assert!(r.is_err());
    }

    #[test]
    fn partition_prefers_the_long_side() {
        assert_eq!(partition(8, 8, 8, 16), (1, 1));
        assert_eq!(partition(64, 50176, 576, 16).0, 1);
        let (mp, np) = partition(4096, 64, 512, 8);
        assert!(mp >= 8 && np == 1, "{mp} {np}");
    }
}
