//! Arithmetic on possibly symbolic dimensions: broadcasting, products, axes.

use runnx_ir::Dim;

use crate::context::RuleError;

/// Multidirectional (numpy) broadcasting of several shapes.
pub fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>, RuleError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut result = Dim::Fixed(1);
        // Whether some input has an unknown or symbolic size here that could still be 1.
        let mut undecided = Vec::new();
        for shape in shapes {
            let Some(pos) = (i + shape.len()).checked_sub(rank) else {
                continue;
            };
            match &shape[pos] {
                Dim::Fixed(1) => {}
                Dim::Fixed(n) => match result {
                    Dim::Fixed(1) => result = Dim::Fixed(*n),
                    Dim::Fixed(m) if m == *n => {}
                    Dim::Fixed(m) => {
                        return Err(RuleError::invalid(format!(
                            "shapes {} cannot broadcast: dimension {m} against {n}",
                            shapes
                                .iter()
                                .map(|s| format_shape(s))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        )))
                    }
                    _ => result = Dim::Fixed(*n),
                },
                other => undecided.push(other.clone()),
            }
        }
        if result == Dim::Fixed(1) && !undecided.is_empty() {
            // Equal symbols broadcast to themselves; anything else is unknown here.
            let first = &undecided[0];
            result = if matches!(first, Dim::Symbol(_)) && undecided.iter().all(|d| d == first) {
                first.clone()
            } else {
                Dim::Unknown
            };
        }
        out.push(result);
    }
    Ok(out)
}

/// The product of dimensions: fixed when all are fixed (or one is 0).
pub fn product(dims: &[Dim]) -> Dim {
    if dims.contains(&Dim::Fixed(0)) {
        return Dim::Fixed(0);
    }
    let mut total = 1usize;
    for d in dims {
        match d {
            Dim::Fixed(n) => total = total.saturating_mul(*n),
            _ => {
                return if dims.len() == 1 {
                    d.clone()
                } else {
                    Dim::Unknown
                }
            }
        }
    }
    Dim::Fixed(total)
}

/// `d * k`: fixed when `d` is, 0 when `k` is, `d` itself when `k` is 1, else unknown.
pub fn times(d: &Dim, k: usize) -> Dim {
    match d {
        Dim::Fixed(n) => Dim::Fixed(n.saturating_mul(k)),
        _ if k == 1 => d.clone(),
        _ if k == 0 => Dim::Fixed(0),
        _ => Dim::Unknown,
    }
}

/// `d / k`: an error when `d` is fixed and `k` does not divide it (`what` names the size);
/// `d` itself when `k` is 1, else unknown.
pub fn divide(d: &Dim, k: usize, what: &str) -> Result<Dim, RuleError> {
    Ok(match d {
        Dim::Fixed(n) if k != 0 && n % k == 0 => Dim::Fixed(n / k),
        Dim::Fixed(n) => {
            return Err(RuleError::invalid(format!(
                "{what} {n} is not divisible by {k}"
            )))
        }
        _ if k == 1 => d.clone(),
        _ => Dim::Unknown,
    })
}

/// `a + b`: fixed when both are, the other one when one is 0, else unknown.
pub fn plus(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(x.saturating_add(*y)),
        (Dim::Fixed(0), d) | (d, Dim::Fixed(0)) => d.clone(),
        _ => Dim::Unknown,
    }
}

/// The size `x` with `product(whole) == x * product(part)`, cancelling named dims on both sides
/// (a reshape's -1 entry); an error when fixed sizes do not divide.
pub fn quotient(whole: &[Dim], part: &[Dim]) -> Result<Dim, RuleError> {
    let mut whole: Vec<&Dim> = whole.iter().collect();
    let mut part_rest = Vec::new();
    for d in part {
        match whole
            .iter()
            .position(|w| *w == d && matches!(d, Dim::Symbol(_)))
        {
            Some(p) => {
                whole.remove(p);
            }
            None => part_rest.push(d),
        }
    }
    let split = |dims: Vec<&Dim>| -> (usize, Vec<Dim>) {
        let mut fixed = 1usize;
        let mut other = Vec::new();
        for d in dims {
            match d {
                Dim::Fixed(n) => fixed = fixed.saturating_mul(*n),
                d => other.push(d.clone()),
            }
        }
        (fixed, other)
    };
    let (w, w_other) = split(whole);
    let (p, p_other) = split(part_rest);
    if !p_other.is_empty() || p == 0 {
        return Ok(Dim::Unknown);
    }
    if w_other.is_empty() && w % p != 0 {
        return Err(RuleError::invalid(format!(
            "cannot infer the -1 entry: {w} elements do not divide by {p}"
        )));
    }
    Ok(match w_other.as_slice() {
        [] => Dim::Fixed(w / p),
        [Dim::Symbol(s)] if w == p => Dim::Symbol(s.clone()),
        _ => Dim::Unknown,
    })
}

/// `shape` reduced over `axes` (all axes when empty): the reduced dims dropped, or kept as 1
/// with `keepdims`.
pub fn reduce(shape: &[Dim], axes: &[i64], keepdims: bool) -> Result<Vec<Dim>, RuleError> {
    let axes = normalize_axes(axes, shape.len())?;
    let reduced = |i: usize| axes.is_empty() || axes.contains(&i);
    Ok(shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (reduced(i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect())
}

/// Resolves a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, RuleError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(RuleError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Resolves a list of axes, refusing duplicates.
pub fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, RuleError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = normalize_axis(a, rank)?;
        if out.contains(&a) {
            return Err(RuleError::invalid(format!("axis {a} is repeated")));
        }
        out.push(a);
    }
    Ok(out)
}

/// The more specific of two dimensions that must be equal; an error when they differ.
pub fn unify(a: &Dim, b: &Dim) -> Result<Dim, RuleError> {
    Ok(match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) if x != y => {
            return Err(RuleError::invalid(format!(
                "dimensions {x} and {y} must be equal"
            )))
        }
        (Dim::Fixed(_), _) => a.clone(),
        (_, Dim::Fixed(_)) => b.clone(),
        (Dim::Symbol(_), _) => a.clone(),
        _ => b.clone(),
    })
}

pub fn fixed(dims: &[Dim]) -> Option<Vec<usize>> {
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        })
        .collect()
}

pub fn format_shape(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// `ceil` or `floor` of `(size + pads - extent) / stride + 1` for pooling and convolution; in ceil
/// mode a last window that would start in the end padding is dropped.
pub fn sliding_output(
    size: &Dim,
    pad_begin: i64,
    pad_end: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    ceil_mode: bool,
) -> Result<Dim, RuleError> {
    let Dim::Fixed(n) = size else {
        return Ok(Dim::Unknown);
    };
    let pads = pad_begin + pad_end;
    let extent = dilation * (kernel - 1) + 1;
    let span = *n as i64 + pads - extent;
    if span < 0 {
        return Err(RuleError::invalid(format!(
            "input size {n} (padded by {pads}) is smaller than the kernel extent {extent}"
        )));
    }
    if stride <= 0 {
        return Err(RuleError::invalid(format!(
            "stride {stride} must be positive"
        )));
    }
    let mut out = if ceil_mode {
        (span + stride - 1) / stride + 1
    } else {
        span / stride + 1
    };
    // With ceil mode the last window must start inside the (left-padded) input.
    if ceil_mode && (out - 1) * stride >= *n as i64 + pad_begin {
        out -= 1;
    }
    Ok(Dim::Fixed(out as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_mixes_fixed_and_symbolic() {
        let a = [Dim::Symbol("N".into()), Dim::Fixed(1), Dim::Fixed(4)];
        let b = [Dim::Fixed(3), Dim::Fixed(1)];
        let out = broadcast(&[&a, &b]).unwrap();
        assert_eq!(
            out,
            vec![Dim::Symbol("N".into()), Dim::Fixed(3), Dim::Fixed(4)]
        );
        assert!(broadcast(&[&[Dim::Fixed(2)], &[Dim::Fixed(3)]]).is_err());
        let c = [Dim::Symbol("M".into())];
        assert_eq!(broadcast(&[&a[..1], &c]).unwrap(), vec![Dim::Unknown]);
    }

    #[test]
    fn pooling_sizes_match_the_spec_formula() {
        // 224 input, kernel 3, stride 2, pads 1+1: floor((224+2-3)/2)+1 = 112.
        assert_eq!(
            sliding_output(&Dim::Fixed(224), 1, 1, 3, 2, 1, false).unwrap(),
            Dim::Fixed(112)
        );
        // ceil mode: 5 input, kernel 2, stride 2 -> 3 windows? The last would start at 4 < 5: 3.
        assert_eq!(
            sliding_output(&Dim::Fixed(5), 0, 0, 2, 2, 1, true).unwrap(),
            Dim::Fixed(3)
        );
    }
}
