//! Shape and data-movement ops: they rearrange, select or generate elements without arithmetic
//! on them (plus the few index-driven numeric ops that sit with them: CumSum, TopK, OneHot...).
//!
//! Everything type-agnostic is written once over the element type (see [`dispatch`]) on top of
//! the block-copy kernels in [`copy`]. Ops that only change a shape (Reshape, Squeeze,
//! Unsqueeze, Flatten, Identity) never copy data.

pub(crate) mod copy;
pub(crate) mod dispatch;
pub(crate) mod dropout;
mod gather;
mod index;
mod join;
mod reshape;
mod scan;
mod scatter;
mod slice;
mod sort;
pub(crate) mod transpose;
mod triangle;

use runnx_ir::Tensor;

use crate::{OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reshape::register(reg);
    dropout::register(reg);
    transpose::register(reg);
    join::register(reg);
    slice::register(reg);
    gather::register(reg);
    scatter::register(reg);
    index::register(reg);
    triangle::register(reg);
    sort::register(reg);
    scan::register(reg);
}

/// `axis` in `-rank..rank` as a dimension index.
pub(crate) fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(OpError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Distinct axes, each in `-rank..rank`, as dimension indices (in the given order).
pub(crate) fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut seen = vec![false; rank];
    axes.iter()
        .map(|&a| {
            let axis = normalize_axis(a, rank)?;
            if std::mem::replace(&mut seen[axis], true) {
                return Err(OpError::invalid(format!("axis {a} is repeated")));
            }
            Ok(axis)
        })
        .collect()
}

/// An index in `-len..len` (negative counts from the end) as a position, or an error naming it.
pub(crate) fn normalize_index(index: i64, len: usize) -> Result<usize, OpError> {
    let n = len as i64;
    let i = if index < 0 { index + n } else { index };
    if i < 0 || i >= n {
        return Err(OpError::invalid(format!(
            "index {index} is out of range for a dimension of {len}"
        )));
    }
    Ok(i as usize)
}

/// An integer tensor input (shape, axes, pads, repeats...) as i64 values.
pub(crate) fn ints_input(t: &Tensor, index: usize) -> Result<Vec<i64>, OpError> {
    t.to_i64_vec().map_err(|_| {
        OpError::input(
            index,
            format!("expected an integer tensor, got {}", t.dtype()),
        )
    })
}

/// A scalar (or one-element) integer input such as an axis or `k`.
pub(crate) fn int_scalar_input(t: &Tensor, index: usize) -> Result<i64, OpError> {
    match ints_input(t, index)?.as_slice() {
        [v] => Ok(*v),
        other => Err(OpError::input(
            index,
            format!("expected one value, got {}", other.len()),
        )),
    }
}

/// A shape given as i64 values: each must be non-negative.
pub(crate) fn dims_from_i64(values: &[i64], what: &str) -> Result<runnx_ir::Shape, OpError> {
    values
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| OpError::invalid(format!("{what} has a negative dimension {d}")))
        })
        .collect()
}

/// Checks that every tensor has the first one's element type.
pub(crate) fn same_dtype<'a>(
    tensors: impl IntoIterator<Item = (usize, &'a Tensor)>,
) -> Result<(), OpError> {
    let mut first = None;
    for (index, t) in tensors {
        match first {
            None => first = Some(t.dtype()),
            Some(d) if d != t.dtype() => {
                return Err(OpError::input(
                    index,
                    format!("expected {d} like input 0, got {}", t.dtype()),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
