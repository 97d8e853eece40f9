//! Micro-kernels: `C[h x NR] (+)= A_panel · B_panel` for one packed A panel (`kc x MR`, the
//! first `h` rows used) and one packed B panel (`kc x NR`), the C tile held in registers.
//!
//! Each ISA has one generic body, instantiated for every row count `1..=MR` so that a short last
//! panel (or a batch-1 product) does not pay for rows it does not have, and for both layouts of
//! A: a packed panel, or the rows of a row-major A read where they lie (see [`ALayout`]). The
//! x86 bodies are compiled with `#[target_feature]` and only reachable through a [`Kernel`]
//! that `supported` returned after checking the CPU.

/// The largest `MR x NR` tile of any kernel (AVX-512: 12 x 32).
pub(crate) const MAX_TILE: usize = 12 * 32;

/// `tile(kc, a, a_row_stride, b_panel, next, c, row_stride_c, accumulate)`; `a_row_stride` is
/// read only by the tiles for [`ALayout::Rows`]. `next` is another `kc·NR` B panel that the x86
/// tiles fetch toward L2 as they go (null: none), so that weights streaming in from memory
/// arrive while this tile computes.
pub(crate) type TileFn =
    unsafe fn(usize, *const f32, usize, *const f32, *const f32, *mut f32, usize, bool);

/// Where a tile reads A's values for rows `0..h` and depths `0..kc`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ALayout {
    /// A packed panel: depth p's `MR` values are consecutive, `a[p·MR + r]`.
    Panel,
    /// A row-major A in place, `a[r·a_row_stride + p]`: no packing pass. The rows are `h`
    /// streams that stay in L1 across a block's B panels.
    Rows,
}

/// The const parameter a tile body takes for each [`ALayout`].
const PANEL: bool = false;
const ROWS: bool = true;

/// A micro-kernel family for one instruction set.
pub struct Kernel {
    pub name: &'static str,
    /// Rows of A per panel (broadcast operand).
    pub mr: usize,
    /// Columns of B per panel (vector operand).
    pub nr: usize,
    /// `panel_tiles[h - 1]` computes `h` rows from a packed A panel.
    panel_tiles: &'static [TileFn],
    /// `row_tiles[h - 1]` computes `h` rows from A's rows in place.
    row_tiles: &'static [TileFn],
}

impl Kernel {
    pub(crate) fn tile(&self, rows: usize, layout: ALayout) -> TileFn {
        match layout {
            ALayout::Panel => self.panel_tiles[rows - 1],
            ALayout::Rows => self.row_tiles[rows - 1],
        }
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}x{})", self.name, self.mr, self.nr)
    }
}

/// The kernels this CPU can run, fastest first; the portable one is always last.
pub(crate) fn supported() -> Vec<&'static Kernel> {
    let mut kernels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            kernels.push(&x86::AVX512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            kernels.push(&x86::AVX2);
        }
    }
    kernels.push(&PORTABLE);
    kernels
}

macro_rules! tile_table {
    ($f:ident, $layout:expr, $($h:literal),*) => {
        &[$($f::<$h, { $layout }> as TileFn),*]
    };
}

/// The offset of A's value for row `r` and depth `p` in a tile's A operand.
#[inline(always)]
fn a_offset<const MR: usize, const ROWS_LAYOUT: bool>(
    r: usize,
    p: usize,
    row_stride: usize,
) -> usize {
    if ROWS_LAYOUT {
        r * row_stride + p
    } else {
        p * MR + r
    }
}

const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 16;

pub(crate) static PORTABLE: Kernel = Kernel {
    name: "portable",
    mr: PORTABLE_MR,
    nr: PORTABLE_NR,
    panel_tiles: tile_table!(portable_tile, PANEL, 1, 2, 3, 4),
    row_tiles: tile_table!(portable_tile, ROWS, 1, 2, 3, 4),
};

/// Plain Rust over fixed-size arrays, which compilers vectorise for the baseline ISA.
///
/// # Safety
/// `a` holds A's values for `H` rows and `kc` depths in the tile's layout (`kc·MR` floats for a
/// panel), `b` `kc·NR` floats, and `c` addresses `H` rows of `NR` floats `rsc` apart.
unsafe fn portable_tile<const H: usize, const ROWS_LAYOUT: bool>(
    kc: usize,
    a: *const f32,
    a_row_stride: usize,
    b: *const f32,
    _next: *const f32,
    c: *mut f32,
    rsc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract.
    let b = unsafe { std::slice::from_raw_parts(b, kc * PORTABLE_NR) };
    let mut acc = [[0f32; PORTABLE_NR]; H];
    for (p, b_k) in b.chunks_exact(PORTABLE_NR).enumerate() {
        for (r, row) in acc.iter_mut().enumerate() {
            let at = a_offset::<PORTABLE_MR, ROWS_LAYOUT>(r, p, a_row_stride);
            // SAFETY: row r < H and depth p < kc of A (the caller's contract).
            let a_v = unsafe { *a.add(at) };
            for (s, &b_v) in row.iter_mut().zip(b_k) {
                *s += a_v * b_v;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r of the C tile, NR floats.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(r * rsc), PORTABLE_NR) };
        if accumulate {
            dst.iter_mut().zip(row).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{a_offset, Kernel, TileFn, PANEL, ROWS};
    use std::arch::x86_64::*;

    const AVX512_MR: usize = 12;
    const AVX512_NR: usize = 32;

    pub(crate) static AVX512: Kernel = Kernel {
        name: "avx512",
        mr: AVX512_MR,
        nr: AVX512_NR,
        panel_tiles: tile_table!(avx512_tile, PANEL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
        row_tiles: tile_table!(avx512_tile, ROWS, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
    };

    /// 12 rows x 2 vectors of 16: 24 accumulators, two B loads and 12 broadcasts per k.
    ///
    /// # Safety
    /// AVX-512F present; `a` holds A's values for `H` rows and `kc` depths in the tile's layout,
    /// `b` `kc·32` floats, `c` addresses `H` rows of 32 floats `rsc` apart (`next` is only
    /// prefetched, which never faults).
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn avx512_tile<const H: usize, const ROWS_LAYOUT: bool>(
        kc: usize,
        a: *const f32,
        a_row_stride: usize,
        b: *const f32,
        next: *const f32,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; H];
        macro_rules! step {
            ($acc:expr, $p:expr) => {
                // SAFETY: p < kc, inside both panels.
                unsafe {
                    let b_p = b.add($p * AVX512_NR);
                    let b0 = _mm512_loadu_ps(b_p);
                    let b1 = _mm512_loadu_ps(b_p.add(16));
                    if !next.is_null() {
                        let n_p = next.wrapping_add($p * AVX512_NR).cast::<i8>();
                        _mm_prefetch::<_MM_HINT_T1>(n_p);
                        _mm_prefetch::<_MM_HINT_T1>(n_p.wrapping_add(64));
                    }
                    for (r, row) in $acc.iter_mut().enumerate() {
                        let at = a_offset::<AVX512_MR, ROWS_LAYOUT>(r, $p, a_row_stride);
                        let a_r = _mm512_set1_ps(*a.add(at));
                        row[0] = _mm512_fmadd_ps(a_r, b0, row[0]);
                        row[1] = _mm512_fmadd_ps(a_r, b1, row[1]);
                    }
                }
            };
        }
        if H < 4 {
            // Under four rows there are too few accumulators to cover the FMA latency (a
            // batch-1 linear layer ran at a quarter of peak): even and odd depths go to two
            // sets, added at the end.
            let mut odd = [[_mm512_setzero_ps(); 2]; H];
            for p in 0..kc / 2 {
                step!(acc, 2 * p);
                step!(odd, 2 * p + 1);
            }
            if kc % 2 == 1 {
                step!(acc, kc - 1);
            }
            for (row, odd) in acc.iter_mut().zip(&odd) {
                row[0] = _mm512_add_ps(row[0], odd[0]);
                row[1] = _mm512_add_ps(row[1], odd[1]);
            }
        } else {
            for p in 0..kc {
                step!(acc, p);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: row r of the C tile, 32 floats.
            unsafe {
                let dst = c.add(r * rsc);
                let (mut lo, mut hi) = (row[0], row[1]);
                if accumulate {
                    lo = _mm512_add_ps(lo, _mm512_loadu_ps(dst));
                    hi = _mm512_add_ps(hi, _mm512_loadu_ps(dst.add(16)));
                }
                _mm512_storeu_ps(dst, lo);
                _mm512_storeu_ps(dst.add(16), hi);
            }
        }
    }

    const AVX2_MR: usize = 6;
    const AVX2_NR: usize = 16;

    pub(crate) static AVX2: Kernel = Kernel {
        name: "avx2",
        mr: AVX2_MR,
        nr: AVX2_NR,
        panel_tiles: tile_table!(avx2_tile, PANEL, 1, 2, 3, 4, 5, 6),
        row_tiles: tile_table!(avx2_tile, ROWS, 1, 2, 3, 4, 5, 6),
    };

    /// 6 rows x 2 vectors of 8: 12 accumulators, two B loads and 6 broadcasts per k.
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds A's values for `H` rows and `kc` depths in the tile's
    /// layout, `b` `kc·16` floats, `c` addresses `H` rows of 16 floats `rsc` apart.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const H: usize, const ROWS_LAYOUT: bool>(
        kc: usize,
        a: *const f32,
        a_row_stride: usize,
        b: *const f32,
        next: *const f32,
        c: *mut f32,
        rsc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; H];
        for p in 0..kc {
            // SAFETY: p < kc, inside both panels.
            unsafe {
                let b_p = b.add(p * AVX2_NR);
                let b0 = _mm256_loadu_ps(b_p);
                let b1 = _mm256_loadu_ps(b_p.add(8));
                if !next.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(p * AVX2_NR).cast::<i8>());
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let at = a_offset::<AVX2_MR, ROWS_LAYOUT>(r, p, a_row_stride);
                    let a_r = _mm256_broadcast_ss(&*a.add(at));
                    row[0] = _mm256_fmadd_ps(a_r, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(a_r, b1, row[1]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: row r of the C tile, 16 floats.
            unsafe {
                let dst = c.add(r * rsc);
                let (mut lo, mut hi) = (row[0], row[1]);
                if accumulate {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(dst));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(dst.add(8)));
                }
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            }
        }
    }
}
