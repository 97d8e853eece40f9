//! Matrix multiplication kernels.
