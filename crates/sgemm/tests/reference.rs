//! Every supported kernel against the f64 triple loop, on awkward sizes and every operand form.

use std::ops::Range;

use runnx_sgemm::{
    gemm_with, reference, supported_kernels, BlockSource, Kernel, Lhs, Output, PackedA, PackedB,
    Rhs, View,
};

/// A small deterministic generator (xorshift), values in [-1, 1).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn view(data: &[f32], rows: usize, cols: usize) -> View<'_> {
    View {
        data,
        rows,
        cols,
        row_stride: cols,
        col_stride: 1,
    }
}

/// B as a block source (as Conv's im2col is).
struct Source<'a>(View<'a>);

impl BlockSource for Source<'_> {
    fn rows(&self) -> usize {
        self.0.rows
    }
    fn cols(&self) -> usize {
        self.0.cols
    }
    fn fill(&self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) {
        let w = cols.len();
        for (i, r) in rows.enumerate() {
            for (j, c) in cols.clone().enumerate() {
                out[i * w + j] = self.0.data[r * self.0.row_stride + c * self.0.col_stride];
            }
        }
    }
}

/// B as a source that writes packed panels itself.
struct PanelSource<'a>(View<'a>);

impl BlockSource for PanelSource<'_> {
    fn rows(&self) -> usize {
        self.0.rows
    }
    fn cols(&self) -> usize {
        self.0.cols
    }
    fn fill(&self, _: Range<usize>, _: Range<usize>, _: &mut [f32]) {
        panic!("fill_panels is used");
    }
    fn fill_panels(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        width: usize,
        out: &mut [f32],
    ) -> bool {
        let kc = rows.len();
        for (p, r) in rows.enumerate() {
            for (panel, first) in cols.clone().step_by(width).enumerate() {
                for t in 0..width {
                    let c = first + t;
                    out[panel * width * kc + p * width + t] = if c < cols.end {
                        self.0.data[r * self.0.row_stride + c]
                    } else {
                        0.0
                    };
                }
            }
        }
        true
    }
}

fn assert_close(got: &[f32], want: &[f32], k: usize, what: &str) {
    // Each output sums k products of values below 1 in magnitude.
    let tol = 1e-6 * (k as f32 + 1.0) * 4.0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

fn check(kernel: &Kernel, m: usize, k: usize, n: usize) {
    let a_data = random(m * k, (m * 31 + k) as u64);
    let b_data = random(k * n, (k * 17 + n) as u64);
    let a = view(&a_data, m, k);
    let b = view(&b_data, k, n);
    let want = reference(a, b);
    let packed_a = PackedA::for_kernel(a, kernel);
    let packed_b = PackedB::for_kernel(b, kernel);
    let source = Source(b);
    let panels = PanelSource(b);
    let lhs = [Lhs::View(a), Lhs::Packed(&packed_a)];
    let rhs = [
        Rhs::View(b),
        Rhs::Packed(&packed_b),
        Rhs::Source(&source),
        Rhs::Source(&panels),
    ];
    for (li, l) in lhs.iter().enumerate() {
        for (ri, r) in rhs.iter().enumerate() {
            let what = format!("{kernel:?} {m}x{k}x{n} lhs {li} rhs {ri}");
            let mut c = vec![f32::NAN; m * n];
            gemm_with(
                kernel,
                *l,
                *r,
                0..m,
                0..n,
                Output {
                    data: &mut c,
                    row_stride: n,
                },
                false,
            );
            assert_close(&c, &want, k, &what);
            // Accumulating doubles it.
            gemm_with(
                kernel,
                *l,
                *r,
                0..m,
                0..n,
                Output {
                    data: &mut c,
                    row_stride: n,
                },
                true,
            );
            let twice: Vec<f32> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(&c, &twice, 2 * k, &format!("{what} accumulate"));
        }
    }
    // A block at panel-aligned starts, into a strided output.
    let rows = if m > kernel.mr { kernel.mr } else { 0 }..m;
    let cols = if n > kernel.nr { kernel.nr } else { 0 }..n;
    let stride = cols.len() + 3;
    let mut c = vec![0f32; rows.len() * stride];
    gemm_with(
        kernel,
        Lhs::Packed(&packed_a),
        Rhs::Packed(&packed_b),
        rows.clone(),
        cols.clone(),
        Output {
            data: &mut c,
            row_stride: stride,
        },
        false,
    );
    for (i, r) in rows.clone().enumerate() {
        let got = &c[i * stride..i * stride + cols.len()];
        let want_row = &want[r * n + cols.start..r * n + cols.end];
        assert_close(
            got,
            want_row,
            k,
            &format!("{kernel:?} {m}x{k}x{n} block row {r}"),
        );
        assert!(c[i * stride + cols.len()..(i + 1) * stride]
            .iter()
            .all(|&v| v == 0.0));
    }
}

#[test]
fn every_kernel_matches_the_reference() {
    let sizes = [1, 2, 7, 12, 13, 17, 33, 64, 100];
    for kernel in supported_kernels() {
        for &m in &sizes {
            for &n in &sizes {
                // 1024: A's rows 4 KiB apart, which are packed rather than read in place.
                for &k in &[1, 7, 17, 256, 300, 1024] {
                    check(kernel, m, k, n);
                }
            }
        }
        check(kernel, 130, 1000, 777);
    }
}

/// `a·b` of two views, as they lie, against the reference.
fn check_views(kernel: &Kernel, a: View, b: View, what: &str) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let want = reference(a, b);
    let mut c = vec![0f32; m * n];
    gemm_with(
        kernel,
        Lhs::View(a),
        Rhs::View(b),
        0..m,
        0..n,
        Output {
            data: &mut c,
            row_stride: n,
        },
        false,
    );
    assert_close(&c, &want, k, &format!("{kernel:?} {what}"));
}

#[test]
fn transposed_views_are_read_by_their_strides() {
    for kernel in supported_kernels() {
        let (m, k, n) = (19, 37, 45);
        let at = random(k * m, 5);
        let bt = random(n * k, 6);
        let a = View {
            data: &at,
            rows: m,
            cols: k,
            row_stride: 1,
            col_stride: m,
        };
        let b = View {
            data: &bt,
            rows: k,
            cols: n,
            row_stride: 1,
            col_stride: k,
        };
        check_views(kernel, a, b, "transposed");
    }
}

#[test]
fn row_major_views_are_read_by_their_row_stride() {
    // A is the middle of a wider matrix, read in place with its rows 50 apart; then rows 1024
    // apart, which are packed.
    for kernel in supported_kernels() {
        let (m, k, n) = (29, 37, 45);
        for stride in [50, 1024] {
            let data = random(m * stride, 7);
            let a = View {
                data: &data[3..],
                rows: m,
                cols: k,
                row_stride: stride,
                col_stride: 1,
            };
            let b_data = random(k * n, 8);
            let b = view(&b_data, k, n);
            check_views(kernel, a, b, &format!("row stride {stride}"));
        }
    }
}

#[test]
fn zero_depth_writes_zeros() {
    for kernel in supported_kernels() {
        let a = View {
            data: &[],
            rows: 3,
            cols: 0,
            row_stride: 0,
            col_stride: 1,
        };
        let b = View {
            data: &[],
            rows: 0,
            cols: 4,
            row_stride: 4,
            col_stride: 1,
        };
        let mut c = vec![f32::NAN; 12];
        gemm_with(
            kernel,
            Lhs::View(a),
            Rhs::View(b),
            0..3,
            0..4,
            Output {
                data: &mut c,
                row_stride: 4,
            },
            false,
        );
        assert!(c.iter().all(|&v| v == 0.0));
    }
}
