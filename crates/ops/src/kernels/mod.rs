//! Type-generic numeric kernels shared by several ops (broadcasting, GEMM, ...).

pub mod broadcast;
pub mod gemm;
