//! Micro-kernels: `C[h x NR] (+)= A_panel · B_panel` for one packed A panel (`kc x MR`, the
//! first `h` rows used) and one packed B panel (`kc x NR`), the C tile held in registers.
//!
//! Each ISA has one generic body, instantiated for every row count `1..=MR` so that a short last
//! panel (or a batch-1 product) does not pay for rows it does not have. The x86 bodies are
//! compiled with `#[target_feature]` and only reachable through a [`Kernel`] that `supported`
//! returned after checking the CPU.

/// The largest `MR x NR` tile of any kernel (AVX-512: 12 x 32).
pub(crate) const MAX_TILE: usize = 12 * 32;

/// `tile(kc, a_panel, b_panel, c, row_stride_c, accumulate)`.
pub(crate) type TileFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool);

/// A micro-kernel family for one instruction set.
pub struct Kernel {
    pub name: &'static str,
    /// Rows of A per panel (broadcast operand).
    pub mr: usize,
    /// Columns of B per panel (vector operand).
    pub nr: usize,
    /// `tiles[h - 1]` computes `h` rows.
    tiles: &'static [TileFn],
}

impl Kernel {
    pub(crate) fn tile(&self, rows: usize) -> TileFn {
        self.tiles[rows - 1]
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
    ($f:ident, $($h:literal),*) => {
        &[$($f::<$h> as TileFn),*]
    };
}

const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 16;

pub(crate) static PORTABLE: Kernel = Kernel {
    name: "portable",
    mr: PORTABLE_MR,
    nr: PORTABLE_NR,
    tiles: tile_table!(portable_tile, 1, 2, 3, 4),
};

/// Plain Rust over fixed-size arrays, which compilers vectorise for the baseline ISA.
///
/// # Safety
/// `a` holds `kc·MR` floats, `b` `kc·NR`, and `c` addresses `H` rows of `NR` floats `rsc` apart.
unsafe fn portable_tile<const H: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * PORTABLE_MR),
            std::slice::from_raw_parts(b, kc * PORTABLE_NR),
        )
    };
    let mut acc = [[0f32; PORTABLE_NR]; H];
    for (a_k, b_k) in a.chunks_exact(PORTABLE_MR).zip(b.chunks_exact(PORTABLE_NR)) {
        for (row, &a_v) in acc.iter_mut().zip(a_k) {
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
    use super::{Kernel, TileFn};
    use std::arch::x86_64::*;

    const AVX512_MR: usize = 12;
    const AVX512_NR: usize = 32;

    pub(crate) static AVX512: Kernel = Kernel {
        name: "avx512",
        mr: AVX512_MR,
        nr: AVX512_NR,
        tiles: tile_table!(avx512_tile, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
    };

    /// 12 rows x 2 vectors of 16: 24 accumulators, two B loads and 12 broadcasts per k.
    ///
    /// # Safety
    /// AVX-512F present; `a` holds `kc·12` floats, `b` `kc·32`, `c` addresses `H` rows of 32
    /// floats `rsc` apart.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn avx512_tile<const H: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
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
                    let a_p = a.add($p * AVX512_MR);
                    for (r, row) in $acc.iter_mut().enumerate() {
                        let a_r = _mm512_set1_ps(*a_p.add(r));
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
        tiles: tile_table!(avx2_tile, 1, 2, 3, 4, 5, 6),
    };

    /// 6 rows x 2 vectors of 8: 12 accumulators, two B loads and 6 broadcasts per k.
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds `kc·6` floats, `b` `kc·16`, `c` addresses `H` rows of 16
    /// floats `rsc` apart.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const H: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
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
                let a_p = a.add(p * AVX2_MR);
                for (r, row) in acc.iter_mut().enumerate() {
                    let a_r = _mm256_broadcast_ss(&*a_p.add(r));
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
