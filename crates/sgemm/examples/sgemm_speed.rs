//! GFLOP/s of each supported kernel on conv- and linear-shaped products:
//! `cargo run --release -p runnx-sgemm --example sgemm_speed`.

use std::time::Instant;

use runnx_sgemm::{gemm_with, supported_kernels, Lhs, Output, PackedA, PackedB, Rhs, View};

fn main() {
    // (m, k, n): ResNet-18 convolutions as GEMM (Cout, Cin·9, H·W), BERT-tiny's linear layers.
    let shapes = [
        (64, 147, 12544),
        (64, 576, 3136),
        (128, 1152, 784),
        (256, 2304, 196),
        (512, 4608, 49),
        (128, 128, 128),
        (128, 128, 512),
        (128, 512, 128),
        (8, 784, 128),
        (64, 288, 121),
    ];
    for kernel in supported_kernels() {
        for &(m, k, n) in &shapes {
            let a_data: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let b_data: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
            let a = View {
                data: &a_data,
                rows: m,
                cols: k,
                row_stride: k,
                col_stride: 1,
            };
            let b = View {
                data: &b_data,
                rows: k,
                cols: n,
                row_stride: n,
                col_stride: 1,
            };
            let pa = PackedA::for_kernel(a, kernel);
            let pb = PackedB::for_kernel(b, kernel);
            let mut c = vec![0f32; m * n];
            for (label, lhs, rhs) in [
                ("packed A, view B", Lhs::Packed(&pa), Rhs::View(b)),
                ("view A, packed B", Lhs::View(a), Rhs::Packed(&pb)),
            ] {
                let flop = 2.0 * (m * k * n) as f64;
                let reps = ((2e9 / flop) as usize).clamp(3, 100_000);
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        gemm_with(
                            kernel,
                            lhs,
                            rhs,
                            0..m,
                            0..n,
                            Output {
                                data: &mut c,
                                row_stride: n,
                            },
                            false,
                        );
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                println!(
                    "{:8} {m:4}x{k:5}x{n:6} {label}: {:7.1} GFLOP/s  {:9.1} us",
                    kernel.name,
                    flop / best / 1e9,
                    best * 1e6
                );
            }
        }
    }
}
