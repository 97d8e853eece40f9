//! Element-wise closeness of tensors, shared by `weights diff` and `compare`.

use runnx_ir::{Tensor, TensorData};

/// `|actual - expected| <= atol + rtol * |expected|`, NumPy's `allclose` with `expected` as the
/// reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    /// `numpy.testing.assert_allclose`'s defaults.
    fn default() -> Self {
        Tolerance {
            rtol: 1e-7,
            atol: 0.0,
        }
    }
}

/// How far one tensor is from a reference of the same shape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Closeness {
    /// Largest `|actual - expected|` (0 for empty tensors; infinite when a NaN meets a number).
    pub max_abs_diff: f64,
    /// Largest `|actual - expected| / |expected|` over elements that differ.
    pub max_rel_diff: f64,
    /// Elements outside the tolerance.
    pub outside: usize,
    pub total: usize,
}

impl Closeness {
    pub fn passes(&self) -> bool {
        self.outside == 0
    }
}

/// Compares element by element. NaN equals NaN and equal infinities are equal; any other NaN or
/// infinity against a different value counts as an infinite difference.
pub fn closeness(actual: &[f64], expected: &[f64], tol: Tolerance) -> Closeness {
    let mut c = Closeness {
        total: expected.len(),
        ..Default::default()
    };
    for (&a, &e) in actual.iter().zip(expected) {
        if a == e || (a.is_nan() && e.is_nan()) {
            continue;
        }
        let diff = (a - e).abs();
        let diff = if diff.is_nan() { f64::INFINITY } else { diff };
        let rel = if e == 0.0 {
            f64::INFINITY
        } else {
            diff / e.abs()
        };
        c.max_abs_diff = c.max_abs_diff.max(diff);
        c.max_rel_diff = c.max_rel_diff.max(rel);
        // An infinity only matches itself (handled above), whatever the tolerance.
        let infinite = a.is_infinite() || e.is_infinite() || diff.is_infinite();
        if infinite || diff > tol.atol + tol.rtol * e.abs() {
            c.outside += 1;
        }
    }
    c
}

/// The elements of a real-valued tensor (floats, integers, bool) as f64; `None` for strings,
/// complex and the 8/4/2-bit types.
pub fn to_f64(t: &Tensor) -> Option<Vec<f64>> {
    fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
        Some(v.iter().map(|&x| f(x)).collect())
    }
    match t.data() {
        TensorData::Float(v) => conv(v, f64::from),
        TensorData::Double(v) => Some(v.clone()),
        TensorData::Float16(v) => conv(v, |x| x.to_f64()),
        TensorData::Bfloat16(v) => conv(v, |x| x.to_f64()),
        TensorData::Int8(v) => conv(v, f64::from),
        TensorData::Int16(v) => conv(v, f64::from),
        TensorData::Int32(v) => conv(v, f64::from),
        TensorData::Int64(v) => conv(v, |x| x as f64),
        TensorData::Uint8(v) => conv(v, f64::from),
        TensorData::Uint16(v) => conv(v, f64::from),
        TensorData::Uint32(v) => conv(v, f64::from),
        TensorData::Uint64(v) => conv(v, |x| x as f64),
        TensorData::Bool(v) => conv(v, |x| f64::from(u8::from(x))),
        _ => None,
    }
}

/// Compares two tensors of the same shape: exactly when they are not numeric (strings), else
/// through f64. `None` when they cannot be compared (shapes differ, or only one is numeric).
pub fn tensor_closeness(actual: &Tensor, expected: &Tensor, tol: Tolerance) -> Option<Closeness> {
    if actual.shape() != expected.shape() {
        return None;
    }
    match (to_f64(actual), to_f64(expected)) {
        (Some(a), Some(e)) => Some(closeness(&a, &e, tol)),
        (None, None) if actual.dtype() == expected.dtype() => {
            let outside = if actual == expected { 0 } else { actual.len() };
            Some(Closeness {
                max_abs_diff: if outside == 0 { 0.0 } else { f64::INFINITY },
                max_rel_diff: if outside == 0 { 0.0 } else { f64::INFINITY },
                outside,
                total: expected.len(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closeness_follows_allclose() {
        let tol = Tolerance {
            rtol: 0.1,
            atol: 0.01,
        };
        let c = closeness(
            &[1.0, 2.05, 0.02, f64::NAN],
            &[1.0, 2.0, 0.0, f64::NAN],
            tol,
        );
        assert_eq!(c.outside, 1, "only 0.02 vs 0 is outside atol");
        assert!((c.max_abs_diff - 0.05).abs() < 1e-12);
        assert_eq!(c.max_rel_diff, f64::INFINITY);
        let c = closeness(&[f64::NAN], &[1.0], tol);
        assert_eq!((c.outside, c.max_abs_diff), (1, f64::INFINITY));
        let c = closeness(&[1.0, f64::INFINITY], &[f64::INFINITY, f64::INFINITY], tol);
        assert_eq!(c.outside, 1);
    }
}
