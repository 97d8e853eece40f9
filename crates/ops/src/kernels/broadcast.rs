//! Multidirectional (NumPy-style) broadcasting.
