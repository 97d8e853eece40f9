//! f32 `exp`, `erf` and erf-GELU over slices, vectorised.
//!
//! Each function is branch-free straight-line arithmetic on every element (special cases are
//! selected, not branched on), so LLVM vectorises the loop; it is compiled three times, for
//! AVX-512, for AVX2+FMA and for the baseline, and the widest the CPU has is picked at run time.
//! The scalar `libm` versions these replace cost 2-3 ns an element; these a fraction of that.
//!
//! Accuracy (checked against f64 in the tests): `exp` within 2 ulp over its whole range (results
//! below f32's smallest normal flush to 0); `erf` within 2e-7 absolute and 1e-6 relative.

multiversion! {
    /// `x = e^x` for every element.
    pub fn exp_in_place(xs: &mut [f32]) => exp_body::<FMA>
}

multiversion! {
    /// `x = erf(x)` for every element.
    pub fn erf_in_place(xs: &mut [f32]) => erf_body::<FMA>
}

multiversion! {
    /// `x = x/2 · (1 + erf(x/√2))` (GELU without approximation) for every element.
    pub fn gelu_in_place(xs: &mut [f32]) => gelu_body::<FMA>
}

multiversion! {
    /// Softmax of one row in place: `e^(x - max) / Σ e^(x - max)`, the maximum ignoring NaN.
    pub fn softmax_in_place(xs: &mut [f32]) => softmax_body::<FMA>
}

multiversion! {
    /// One row of LayerNormalization (see [`NormRow`]); returns the mean and `1/sqrt(var + eps)`.
    pub fn layer_norm_row(row: &NormRow<'_, f32>, sum: Option<&mut [f32]>, y: &mut [f32]) -> (f32, f32)
        => layer_norm_body::<FMA>
}

/// One row of (Skip)LayerNormalization: `s = input + skip + bias` (the last two optional) is
/// normalised, `y = (s - mean(s))·inv_std·gamma + beta`, with the population variance in
/// `inv_std = 1/sqrt(var(s) + eps)`. Every slice has the row's length.
#[derive(Clone, Copy)]
pub struct NormRow<'a, T> {
    pub input: &'a [T],
    pub skip: Option<&'a [T]>,
    pub bias: Option<&'a [T]>,
    pub gamma: &'a [T],
    pub beta: Option<&'a [T]>,
    pub eps: T,
}

/// [`layer_norm_row`] in three passes over the row, in L1 by then: the sum (written to `y`, and
/// to `sum` when asked) with its total; the squared deviations; the scaled result. As generic
/// full-tensor passes (copy, add skip, add bias, moments, normalise, scale) BERT-tiny's
/// SkipLayerNormalization cost 1.5 ns an element.
#[inline(always)]
fn layer_norm_body<const FUSED: bool>(
    row: &NormRow<'_, f32>,
    sum: Option<&mut [f32]>,
    y: &mut [f32],
) -> (f32, f32) {
    let len = y.len();
    assert!(row.input.len() == len && row.gamma.len() == len);
    assert!([row.skip, row.bias, row.beta]
        .iter()
        .flatten()
        .all(|v| v.len() == len));
    y.copy_from_slice(row.input);
    for addend in [row.skip, row.bias].into_iter().flatten() {
        y.iter_mut().zip(addend).for_each(|(y, &a)| *y += a);
    }
    if let Some(sum) = sum {
        sum.copy_from_slice(y);
    }
    let n = len as f32;
    let mean = lane_sum(y, |v| v) / n;
    let var = lane_sum(y, |v| (v - mean) * (v - mean)) / n;
    let inv_std = 1.0 / (var + row.eps).sqrt();
    match row.beta {
        Some(beta) => {
            for ((y, &g), &b) in y.iter_mut().zip(row.gamma).zip(beta) {
                *y = fma::<FUSED>((*y - mean) * inv_std, g, b);
            }
        }
        None => {
            for (y, &g) in y.iter_mut().zip(row.gamma) {
                *y = (*y - mean) * inv_std * g;
            }
        }
    }
    (mean, inv_std)
}

/// `Σ f(x)` with per-lane accumulators, so that it vectorises.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    chunks
        .remainder()
        .iter()
        .fold(reduce_lanes(sums, |a, b| a + b), |t, &v| t + f(v))
}

/// `a·b + c`: one fused instruction in the variants compiled for FMA (`FUSED`), a multiply
/// and an add elsewhere, where `mul_add` is a library call costing nanoseconds. Rust never
/// fuses `a * b + c` by itself, and the unfused exp took twice the instructions.
#[inline(always)]
fn fma<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Softmax in three passes over the row (maximum; exponentials and their sum; scale), each on
/// whole vectors with per-lane accumulators: as separate generic passes (maximum, subtract,
/// exp, sum, scale) only the exp was vectorised for AVX-512, and BERT-tiny's attention softmax
/// (rows of 128) cost 1.1 ns an element.
#[inline(always)]
fn softmax_body<const FUSED: bool>(xs: &mut [f32]) {
    let pick = |a: f32, b: f32| if b > a { b } else { a };
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in maxima.iter_mut().zip(chunk) {
            *m = pick(*m, v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .fold(reduce_lanes(maxima, pick), |m, &v| pick(m, v));
    let mut sums = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            // At most 0, or NaN.
            *v = exp_no_overflow::<FUSED>(*v - max);
            *s += *v;
        }
    }
    let mut total = reduce_lanes(sums, |a, b| a + b);
    for v in chunks.into_remainder() {
        *v = exp_no_overflow::<FUSED>(*v - max);
        total += *v;
    }
    let scale = 1.0 / total;
    for v in xs {
        *v *= scale;
    }
}

/// Lanes of the per-lane accumulators in [`softmax_body`]: one AVX-512 vector.
const LANES: usize = 16;

/// `lanes` combined by `op` as a tree, halves pairwise: four vector steps. A left-to-right
/// fold was a chain of 16 dependent scalar operations, as long as the rest of a 128-wide row.
#[inline(always)]
fn reduce_lanes(mut lanes: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] = op(lanes[i], lanes[i + width]);
        }
        width /= 2;
    }
    lanes[0]
}

#[inline(always)]
fn exp_body<const FUSED: bool>(xs: &mut [f32]) {
    for x in xs {
        *x = exp::<FUSED>(*x);
    }
}

#[inline(always)]
fn erf_body<const FUSED: bool>(xs: &mut [f32]) {
    for x in xs {
        *x = erf::<FUSED>(*x);
    }
}

/// GELU needs `1 + erf(x/√2)`, which is `2 - erfc(a)` for `x >= 0` and `erfc(a)` for `x < 0`
/// (`a = |x|/√2`). One erfc approximation ([`erfc_approx`], absolute error below 1.5e-7)
/// serves the whole range, so unlike `erf` no second branch is computed, and the negative side
/// has no cancellation. Error of the result: below `0.5·|x|·1.5e-7` absolute.
#[inline(always)]
fn gelu_body<const FUSED: bool>(xs: &mut [f32]) {
    for x in xs {
        let v = *x;
        let e = erfc_approx::<FUSED>(v.abs() * std::f32::consts::FRAC_1_SQRT_2);
        let one_plus_erf = if v >= 0.0 { 2.0 - e } else { e };
        *x = 0.5 * v * one_plus_erf;
    }
}

/// erfc(a) for `a >= 0` by Abramowitz and Stegun 7.1.26: `t·P(t)·e^(-a²)` with
/// `t = 1 / (1 + p·a)`, absolute error below 1.5e-7.
#[inline(always)]
fn erfc_approx<const FUSED: bool>(a: f32) -> f32 {
    let t = 1.0 / fma::<FUSED>(0.327_591_1, a, 1.0);
    let poly = [-1.453_152, 1.421_413_8, -0.284_496_74, 0.254_829_6]
        .into_iter()
        .fold(1.061_405_4, |p, c| fma::<FUSED>(p, t, c));
    t * poly * exp_no_overflow::<FUSED>(-a * a)
}

/// Inputs above this overflow to infinity; below `EXP_MIN` the result is not a normal f32.
const EXP_MAX: f32 = 88.722_83;
const EXP_MIN: f32 = -87.336_55;

/// ln 2 split so that `n·LN2_HI` is exact for |n| <= 128.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^r` for `|r| <= ln 2 / 2` by its Taylor series to the 7th power (truncation error below
/// 6e-9 relative), in Estrin's scheme: pairs of terms in parallel, joined by r² and r⁴. Horner's
/// form is one chain of dependent operations, and exp-bound kernels waited on its latency.
#[inline(always)]
fn exp_reduced<const FUSED: bool>(r: f32) -> f32 {
    let (r2, low) = (r * r, 1.0 + r);
    let r4 = r2 * r2;
    let quadratic = fma::<FUSED>(r, 1.0 / 6.0, 1.0 / 2.0);
    let quartic = fma::<FUSED>(r, 1.0 / 120.0, 1.0 / 24.0);
    let sextic = fma::<FUSED>(r, 1.0 / 5040.0, 1.0 / 720.0);
    fma::<FUSED>(
        r4,
        fma::<FUSED>(r2, sextic, quartic),
        fma::<FUSED>(r2, quadratic, low),
    )
}

/// `e^x = 2^n · e^r` with `n = round(x / ln 2)` and `|r| <= ln 2 / 2`, over f32's whole range.
#[inline(always)]
fn exp<const FUSED: bool>(x: f32) -> f32 {
    let clamped = x.clamp(EXP_MIN, EXP_MAX);
    let n = (clamped * std::f32::consts::LOG2_E).round_ties_even();
    let r = fma::<FUSED>(n, -LN2_LO, fma::<FUSED>(n, -LN2_HI, clamped));
    let p = exp_reduced::<FUSED>(r);
    // 2^n built from its exponent bits; n is in [-126, 128], and 2^128 only meets r < 0.
    // The biased exponent, an integer in [1, 254], reaches the low mantissa bits by adding
    // 2^23: float arithmetic and bit operations only (`as i32` saturates, which LLVM could
    // not vectorise: the conversion ran one lane at a time).
    let biased = (n + 127.0).clamp(1.0, 254.0);
    let scale = f32::from_bits(((biased + 8_388_608.0).to_bits() & 0x7f_ffff) << 23);
    let extra = if n > 127.0 { 2.0 } else { 1.0 };
    let y = p * scale * extra;
    if x.is_nan() {
        x
    } else if x > EXP_MAX {
        f32::INFINITY
    } else if x < EXP_MIN {
        0.0
    } else {
        y
    }
}

/// `e^x` for `x <= 88` (NaN stays NaN; below [`EXP_MIN`] 0), in about half the instructions of
/// [`exp`]: no overflow to handle, so 2^n comes straight from the rounding. Softmax (`x - max`)
/// and the error function (`e^(-a²)`) only need this range.
#[inline(always)]
fn exp_no_overflow<const FUSED: bool>(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to an integer (ties to even), held in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    // NaN fails the comparison and stays NaN.
    let clamped = if x < EXP_MIN { EXP_MIN } else { x };
    let shifted = fma::<FUSED>(clamped, std::f32::consts::LOG2_E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = fma::<FUSED>(n, -LN2_LO, fma::<FUSED>(n, -LN2_HI, clamped));
    // n in [-126, 127] sits in the low bits of `shifted` (two's complement over the rounder's
    // own bits, which the shift pushes out): moved to the exponent field and biased, it is 2^n.
    let scale = f32::from_bits((shifted.to_bits() << 23).wrapping_add(127 << 23));
    let y = exp_reduced::<FUSED>(r) * scale;
    if x < EXP_MIN {
        0.0
    } else {
        y
    }
}

const ERF_TERMS: usize = 11;

/// The coefficients of erf's series in x²: erf(x) = x · Σ c_n x^(2n), with
/// c_n = 2/√π · (-1)^n / (n! (2n+1)).
const ERF_SERIES: [f32; ERF_TERMS] = {
    let mut out = [0f32; ERF_TERMS];
    let mut factorial = 1.0f64;
    let mut n = 0;
    while n < ERF_TERMS {
        if n > 0 {
            factorial *= n as f64;
        }
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        out[n] =
            (sign * std::f64::consts::FRAC_2_SQRT_PI / (factorial * (2 * n + 1) as f64)) as f32;
        n += 1;
    }
    out
};

/// Below |x| = 1 the odd Taylor series of erf (11 terms: truncation below 2e-9); from 1 to 4
/// `1 - erfc` with Abramowitz and Stegun's 7.1.26 approximation of erfc (absolute error below
/// 1.5e-7); from 4 on erf is 1 to f32 precision.
#[inline(always)]
fn erf<const FUSED: bool>(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    let mut series = ERF_SERIES[ERF_TERMS - 1];
    for &c in ERF_SERIES[..ERF_TERMS - 1].iter().rev() {
        series = fma::<FUSED>(series, z, c);
    }
    let small = series * a;
    let large = 1.0 - erfc_approx::<FUSED>(a);
    let magnitude = if a < 1.0 {
        small
    } else if a < 4.0 {
        large
    } else {
        1.0
    };
    if x.is_nan() {
        x
    } else {
        magnitude.copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatched function, and its body with and without fused multiply-adds (the variant
    /// a CPU without FMA runs, and the one this CPU may not pick).
    fn variants(
        dispatched: fn(&mut [f32]),
        unfused: fn(&mut [f32]),
        fused: fn(&mut [f32]),
    ) -> [(&'static str, fn(&mut [f32])); 3] {
        [
            ("dispatched", dispatched),
            ("unfused", unfused),
            ("fused", fused),
        ]
    }

    fn samples(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n)
            .map(|i| lo + (hi - lo) * i as f32 / n as f32)
            .collect()
    }

    #[test]
    fn softmax_matches_f64() {
        let softmaxes = variants(
            softmax_in_place,
            softmax_body::<false>,
            softmax_body::<true>,
        );
        for (name, softmax) in softmaxes {
            softmax_variant_matches_f64(name, softmax);
        }
    }

    fn softmax_variant_matches_f64(name: &str, softmax_in_place: fn(&mut [f32])) {
        // Rows shorter and longer than a vector, with a remainder, large and negative values.
        for len in [1usize, 5, 16, 37, 128] {
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 113) as f32 - 50.0) * 0.37)
                .collect();
            let mut got = xs.clone();
            softmax_in_place(&mut got);
            let max = xs.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let total: f64 = xs.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (&x, &y) in xs.iter().zip(&got) {
                let want = (x as f64 - max).exp() / total;
                assert!(
                    (y as f64 - want).abs() <= 1e-6 * want + 1e-9,
                    "{name}, len {len}: {y} vs {want}"
                );
            }
        }
        // A NaN never becomes the maximum; it makes every output NaN, as e^NaN joins the sum.
        let mut row = [1.0, f32::NAN, 2.0];
        softmax_in_place(&mut row);
        assert!(row.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn exp_matches_f64_within_two_ulp() {
        for (name, exp_in_place) in variants(exp_in_place, exp_body::<false>, exp_body::<true>) {
            let mut xs = samples(-87.0, 88.5, 400_000);
            let inputs = xs.clone();
            exp_in_place(&mut xs);
            for (&x, &y) in inputs.iter().zip(&xs) {
                let want = (x as f64).exp();
                let ulp = (want as f32).to_bits().abs_diff(y.to_bits());
                assert!(ulp <= 2, "{name}: exp({x}) = {y}, want {want} ({ulp} ulp)");
            }
            let mut special = [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                100.0,
                -100.0,
                0.0,
            ];
            exp_in_place(&mut special);
            assert!(special[0].is_nan(), "{name}");
            assert_eq!(
                &special[1..],
                &[f32::INFINITY, 0.0, f32::INFINITY, 0.0, 1.0],
                "{name}"
            );
        }
    }

    #[test]
    fn exp_without_overflow_matches_f64_within_two_ulp() {
        let exps: [(&str, fn(f32) -> f32); 2] = [
            ("unfused", exp_no_overflow::<false>),
            ("fused", exp_no_overflow::<true>),
        ];
        for (name, exp) in exps {
            for x in samples(-87.3, 88.0, 400_000) {
                let (y, want) = (exp(x), (x as f64).exp());
                let ulp = (want as f32).to_bits().abs_diff(y.to_bits());
                assert!(ulp <= 2, "{name}: exp({x}) = {y}, want {want} ({ulp} ulp)");
            }
            assert!(exp(f32::NAN).is_nan(), "{name}");
            assert_eq!(exp(f32::NEG_INFINITY), 0.0, "{name}");
            assert_eq!(exp(-100.0), 0.0, "{name}");
        }
    }

    #[test]
    fn erf_matches_libm() {
        for (name, erf_in_place) in variants(erf_in_place, erf_body::<false>, erf_body::<true>) {
            let mut xs = samples(-6.0, 6.0, 600_001);
            xs.extend([1e-30, -1e-20, 1e-6, 0.0, -0.0]);
            let inputs = xs.clone();
            erf_in_place(&mut xs);
            for (&x, &y) in inputs.iter().zip(&xs) {
                let want = libm::erf(x as f64);
                let err = (y as f64 - want).abs();
                assert!(
                    err <= 2e-7 && err <= 1e-6 * want.abs() + 1e-37,
                    "{name}: erf({x}) = {y}, want {want}"
                );
            }
            let mut special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
            erf_in_place(&mut special);
            assert!(special[0].is_nan(), "{name}");
            assert_eq!(&special[1..], &[1.0, -1.0], "{name}");
        }
    }

    #[test]
    fn gelu_matches_its_definition() {
        for (name, gelu_in_place) in variants(gelu_in_place, gelu_body::<false>, gelu_body::<true>)
        {
            let mut xs = samples(-10.0, 10.0, 100_000);
            let inputs = xs.clone();
            gelu_in_place(&mut xs);
            for (&x, &y) in inputs.iter().zip(&xs) {
                let x = x as f64;
                let want = 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                assert!(
                    (y as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
                    "{name}: gelu({x}) = {y}, want {want}"
                );
            }
        }
    }
}
