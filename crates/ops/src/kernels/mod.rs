//! Type-generic numeric kernels shared by several ops (broadcasting, GEMM, vectorised math ...).

/// Defines `$vis fn $name(args) -> ret` that runs `$body` (an `#[inline(always)]` function
/// written for auto-vectorisation, with the same signature) compiled for AVX-512, for
/// AVX2+FMA or for the baseline, whichever is the widest the CPU has. The crate itself is
/// built for baseline x86-64, so without this a hot loop runs as SSE2.
///
/// With `=> body::<FMA>`, `body` takes a `const FUSED: bool`: `true` in the variants that have
/// fused multiply-add instructions, where `f32::mul_add` is one instruction, and `false` in the
/// x86 baseline, where it would be a library call (see `vecmath::fma`).
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:ident::<FMA>) => {
        multiversion! {
            @variants $(#[$doc])* $vis fn $name($($arg: $ty),*) $(-> $ret)?
            => ($body::<true>, $body::<{ cfg!(any(target_arch = "aarch64", target_feature = "fma")) }>)
        }
    };
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:path) => {
        multiversion! {
            @variants $(#[$doc])* $vis fn $name($($arg: $ty),*) $(-> $ret)? => ($body, $body)
        }
    };
    (@variants $(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?
        => ($wide:expr, $baseline:expr)) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $wide($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $wide($($arg),*)
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
            $baseline($($arg),*)
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
