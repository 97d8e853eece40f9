//! Type-generic numeric kernels shared by several ops (broadcasting, GEMM, vectorised math ...).

pub mod broadcast;
pub mod gemm;
pub mod vecmath;
pub mod winograd;
