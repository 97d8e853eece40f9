//! Type-generic numeric kernels shared by several ops (broadcasting, GEMM, vectorised math ...).

/// Defines `$vis fn $name(args) -> ret` that runs `$body` (an `#[inline(always)]` function
/// written for auto-vectorisation, with the same signature) compiled for AVX-512, for
/// AVX2+FMA or for the baseline, whichever is the widest the CPU has. The crate itself is
/// built for baseline x86-64, so without this a hot loop runs as SSE2.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

pub mod broadcast;
pub mod buffers;
pub mod direct_conv;
pub mod gemm;
pub mod padded;
pub mod vecmath;
pub mod winograd;
