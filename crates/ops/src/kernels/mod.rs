//! Type-generic numeric kernels shared by several ops (broadcasting, GEMM, ...).
