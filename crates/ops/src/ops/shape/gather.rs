//! Index-driven selection: Gather, GatherElements, GatherND, Compress.
//!
//! Indices are validated (negative ones wrapped, out-of-range ones rejected) into a `Vec<usize>`
//! before any copy, so the copy loops cannot fail; Gather, GatherND and Compress then copy whole
//! blocks.

use runnx_ir::{strides_of, Shape, Tensor, TensorData, Value};

use super::copy::{for_row_chunks, gather_blocks, product};
use super::dispatch::{with_any_type, AnyFn, Elem};
use super::slice::{advance, unravel};
use super::{ints_input, normalize_axis, normalize_index};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Gather", &[1, 11, 13], build_gather);
    reg.add_versions("", "GatherElements", &[11, 13], build_gather_elements);
    reg.add_versions("", "GatherND", &[11, 12, 13], |info| {
        Ok(Box::new(GatherNd {
            batch_dims: info.attr_int("batch_dims", 0)?,
        }))
    });
    reg.add_versions("", "Compress", &[9, 11], |info| {
        Ok(Box::new(Compress {
            axis: info.attr_int_opt("axis")?,
        }))
    });
}

/// Index tensor values as positions in a dimension of `len` (negative ones count from the end).
fn positions(indices: &Tensor, input: usize, len: usize) -> Result<Vec<usize>, OpError> {
    ints_input(indices, input)?
        .into_iter()
        .map(|i| normalize_index(i, len))
        .collect()
}

/// Gathers the blocks `[outer, axis, inner]` of `x` at `indices` along the middle dimension.
fn gather_axis(
    x: &Tensor,
    axis: usize,
    indices: &[usize],
    shape: Shape,
) -> Result<Tensor, OpError> {
    struct Blocks<'a> {
        x: &'a Tensor,
        axis: usize,
        indices: &'a [usize],
    }
    impl AnyFn for Blocks<'_> {
        type Out = Result<TensorData, OpError>;
        fn call<T: Elem>(self) -> Self::Out {
            let dims = self.x.shape();
            let (outer, inner) = (product(&dims[..self.axis]), product(&dims[self.axis + 1..]));
            let src = self.x.as_slice::<T>()?;
            Ok(T::wrap(gather_blocks(
                src,
                outer,
                dims[self.axis],
                inner,
                self.indices,
            )))
        }
    }
    let data = with_any_type(x.dtype(), Blocks { x, axis, indices })?;
    Ok(Tensor::new(shape, data)?)
}

/// ONNX `Gather`, opsets 1-13: `out[.., j.., ..] = x[.., indices[j..], ..]` along `axis`
/// (negative axes and indices from opset 11). Out-of-range indices are an error.
struct Gather {
    axis: i64,
}

fn build_gather(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Gather {
        axis: info.attr_int("axis", 0)?,
    }))
}

impl Kernel for Gather {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, idx) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let axis = normalize_axis(self.axis, x.rank())?;
        let indices = positions(idx, 1, x.shape()[axis])?;
        let mut shape = Shape::from_slice(&x.shape()[..axis]);
        shape.extend_from_slice(idx.shape());
        shape.extend_from_slice(&x.shape()[axis + 1..]);
        Ok(vec![gather_axis(x, axis, &indices, shape)?.into()])
    }
}

/// ONNX `GatherElements`, opsets 11-13: `out[p] = x[p with p[axis] = indices[p]]`; the output
/// has the indices' shape, which must fit inside the input's outside `axis`.
struct GatherElements {
    axis: i64,
}

fn build_gather_elements(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(GatherElements {
        axis: info.attr_int("axis", 0)?,
    }))
}

impl Kernel for GatherElements {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, idx) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let axis = normalize_axis(self.axis, x.rank())?;
        check_fits(x.shape(), idx.shape(), Some(axis))?;
        let indices = positions(idx, 1, x.shape()[axis])?;
        let offsets = element_offsets(x.shape(), idx.shape(), axis, &indices);
        let data = with_any_type(
            x.dtype(),
            Pick {
                x,
                offsets: &offsets,
            },
        )?;
        Ok(vec![
            Tensor::new(Shape::from_slice(idx.shape()), data)?.into()
        ])
    }
}

/// Checks that `inner` has `outer`'s rank and fits inside it (except along `free`).
fn check_fits(outer: &[usize], inner: &[usize], free: Option<usize>) -> Result<(), OpError> {
    let fits = outer.len() == inner.len()
        && (0..outer.len()).all(|d| Some(d) == free || inner[d] <= outer[d]);
    if fits {
        Ok(())
    } else {
        Err(OpError::invalid(format!(
            "indices of shape {inner:?} do not fit data of shape {outer:?}"
        )))
    }
}

/// The source offset of each element of GatherElements/ScatterElements: position `p` of the
/// indices' shape with `p[axis]` replaced by `indices[p]`, in a tensor of shape `data`.
pub(crate) fn element_offsets(
    data: &[usize],
    index_shape: &[usize],
    axis: usize,
    indices: &[usize],
) -> Vec<usize> {
    let strides = strides_of(data);
    let mut offsets = Vec::with_capacity(indices.len());
    let Some((&row_len, outer)) = index_shape.split_last() else {
        return offsets;
    };
    let last = index_shape.len() - 1;
    let mut index = unravel(0, outer);
    for row in indices.chunks_exact(row_len.max(1)) {
        let base: usize = (0..last)
            .filter(|&d| d != axis)
            .map(|d| index[d] * strides[d])
            .sum();
        for (j, &i) in row.iter().enumerate() {
            let along = if last == axis { 0 } else { j * strides[last] };
            offsets.push(base + along + i * strides[axis]);
        }
        advance(&mut index, outer);
    }
    offsets
}

/// `out[i] = x[offsets[i]]`.
struct Pick<'a> {
    x: &'a Tensor,
    offsets: &'a [usize],
}

impl AnyFn for Pick<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let src = self.x.as_slice::<T>()?;
        let mut out = vec![T::default(); self.offsets.len()];
        for_row_chunks(&mut out, 1, |first, chunk| {
            for (o, &at) in chunk.iter_mut().zip(&self.offsets[first..]) {
                *o = src[at].clone();
            }
        });
        Ok(T::wrap(out))
    }
}

/// ONNX `GatherND`, opsets 11-13: each length-`k` row of the indices addresses a slice
/// `x[b.., i_1, .., i_k, ..]` of the data; the first `batch_dims` (opset 12) dimensions of data
/// and indices are matched one to one.
struct GatherNd {
    batch_dims: i64,
}

/// Validated GatherND / ScatterND indexing: for each index row, the offset of its block.
pub(crate) struct NdIndex {
    /// Offset in the data of each addressed block, in index order.
    pub offsets: Vec<usize>,
    /// Elements per block: the product of the data dimensions after the indexed ones.
    pub block: usize,
    /// The output (GatherND) or updates (ScatterND) shape.
    pub shape: Shape,
}

/// Resolves ND indices into block offsets of `data` (see [`GatherNd`]).
pub(crate) fn nd_index(
    data: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<NdIndex, OpError> {
    let q = indices.rank();
    let (b, r) = (batch_dims, data.len());
    let k = *indices
        .shape()
        .last()
        .ok_or_else(|| OpError::input(1, "indices must have rank 1 or more"))?;
    if r == 0 || b >= q.min(r) || k > r - b {
        return Err(OpError::invalid(format!(
            "indices of shape {:?} with {b} batch dims cannot index data of shape {data:?}",
            indices.shape()
        )));
    }
    if indices.shape()[..b] != data[..b] {
        return Err(OpError::invalid(format!(
            "batch dims of indices {:?} and data {data:?} differ",
            indices.shape()
        )));
    }
    let values = ints_input(indices, 1)?;
    let strides = strides_of(data);
    let batch_stride = if b == 0 { 0 } else { strides[b - 1] };
    // Row `row` of the indices belongs to batch `row / per_batch`.
    let per_batch = product(&indices.shape()[b..q - 1]);
    let rows = product(&indices.shape()[..q - 1]);
    let mut offsets = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut at = (row / per_batch) * batch_stride;
        for (i, &c) in values[row * k..(row + 1) * k].iter().enumerate() {
            at += normalize_index(c, data[b + i])? * strides[b + i];
        }
        offsets.push(at);
    }
    let mut shape = Shape::from_slice(&indices.shape()[..q - 1]);
    shape.extend_from_slice(&data[b + k..]);
    Ok(NdIndex {
        offsets,
        block: product(&data[b + k..]),
        shape,
    })
}

impl Kernel for GatherNd {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (x, idx) = (inputs.tensor(0)?, inputs.tensor(1)?);
        let batch_dims = usize::try_from(self.batch_dims)
            .map_err(|_| OpError::attribute("batch_dims", "must be non-negative"))?;
        let nd = nd_index(x.shape(), idx, batch_dims)?;
        let data = with_any_type(x.dtype(), Blocks { x, nd: &nd })?;
        Ok(vec![Tensor::new(nd.shape.clone(), data)?.into()])
    }
}

/// `out[j, :] = x[offsets[j] .. offsets[j] + block]`.
struct Blocks<'a> {
    x: &'a Tensor,
    nd: &'a NdIndex,
}

impl AnyFn for Blocks<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let src = self.x.as_slice::<T>()?;
        let block = self.nd.block;
        let mut out = vec![T::default(); self.nd.offsets.len() * block];
        for_row_chunks(&mut out, block, |first, rows| {
            for (row, &at) in rows.chunks_exact_mut(block).zip(&self.nd.offsets[first..]) {
                row.clone_from_slice(&src[at..at + block]);
            }
        });
        Ok(T::wrap(out))
    }
}

/// ONNX `Compress`, opsets 9-28: keeps the slices along `axis` (negative from 11) whose
/// `condition` is true, or the flattened elements when `axis` is absent. A condition shorter
/// than the axis drops the rest; a true entry past its end is an error.
struct Compress {
    axis: Option<i64>,
}

impl Kernel for Compress {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let condition = inputs.slice::<bool>(1)?;
        let (x, axis) = match self.axis {
            Some(a) => (x.clone(), normalize_axis(a, x.rank())?),
            None => (x.reshape([x.len()])?, 0),
        };
        let len = x.shape()[axis];
        let kept: Vec<usize> = condition
            .iter()
            .enumerate()
            .filter(|(_, &c)| c)
            .map(|(i, _)| i)
            .collect();
        if let Some(&bad) = kept.iter().find(|&&i| i >= len) {
            return Err(OpError::input(
                1,
                format!("condition selects index {bad} of an axis of {len}"),
            ));
        }
        let mut shape = Shape::from_slice(x.shape());
        shape[axis] = kept.len();
        Ok(vec![gather_axis(&x, axis, &kept, shape)?.into()])
    }
}

/// Gathers along `axis` (for ops in sibling modules: ReverseSequence, Unique).
pub(crate) fn take_along(x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor, OpError> {
    let mut shape = Shape::from_slice(x.shape());
    shape[axis] = indices.len();
    gather_axis(x, axis, indices, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &dyn Kernel, inputs: Vec<Tensor>) -> Result<Tensor, OpError> {
        let values = inputs.into_iter().map(|t| Some(t.into())).collect();
        Ok(k.run(Inputs::new(values))?.remove(0).into_tensor().unwrap())
    }

    #[test]
    fn gather_with_negative_and_bad_indices() {
        let x = Tensor::from_vec([3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let idx = Tensor::from_vec([2, 2], vec![0i64, -1, 1, 2]).unwrap();
        let y = run(&Gather { axis: 0 }, vec![x.clone(), idx]).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[1., 2., 5., 6., 3., 4., 5., 6.]
        );
        let y = run(&Gather { axis: 1 }, vec![x.clone(), Tensor::scalar(1i32)]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2., 4., 6.]);
        assert!(run(&Gather { axis: 0 }, vec![x, Tensor::scalar(3i64)]).is_err());
    }

    #[test]
    fn gather_elements_spec_example() {
        let x = Tensor::from_vec([3, 3], (1..=9).collect::<Vec<i32>>()).unwrap();
        let idx = Tensor::from_vec([2, 3], vec![1i64, 2, 0, 2, 0, 0]).unwrap();
        let y = run(&GatherElements { axis: 0 }, vec![x, idx]).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[4, 8, 3, 7, 2, 3]);
    }

    #[test]
    fn gather_nd_with_batch_dims() {
        // The spec's example 5: batch_dims = 1.
        let x = Tensor::from_vec([2, 2, 2], (0..8).collect::<Vec<i32>>()).unwrap();
        let idx = Tensor::from_vec([2, 1], vec![1i64, 0]).unwrap();
        let y = run(&GatherNd { batch_dims: 1 }, vec![x.clone(), idx]).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[2, 3, 4, 5]);
        let idx = Tensor::from_vec([2, 2], vec![0i64, 1, 1, 0]).unwrap();
        let y = run(&GatherNd { batch_dims: 0 }, vec![x.clone(), idx]).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[2, 3, 4, 5]);
        let bad = Tensor::from_vec([1, 2], vec![0i64, 2]).unwrap();
        assert!(run(&GatherNd { batch_dims: 0 }, vec![x, bad]).is_err());
    }

    #[test]
    fn compress_along_an_axis_and_flat() {
        let x = Tensor::from_vec([3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let c = Tensor::from_vec([2], vec![false, true]).unwrap();
        let y = run(&Compress { axis: Some(0) }, vec![x.clone(), c.clone()]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3., 4.]);
        let y = run(&Compress { axis: None }, vec![x, c]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.]);
    }
}
