//! Ordering ops: TopK and Unique. Both order elements with [`order`] (NaN after everything,
//! as numpy) and break ties by position, so results are deterministic.

use std::cmp::Ordering;

use rayon::prelude::*;
use runnx_ir::{Shape, Tensor, TensorData, Value};

use super::copy::{gather_view, product, StridedView, PARALLEL_MIN};
use super::dispatch::{order, with_ord_type, Elem, OrdFn};
use super::gather::take_along;
use super::{int_scalar_input, normalize_axis};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "TopK", &[1, 10, 11, 24], build_top_k);
    reg.add_versions("", "Unique", &[11, 28], |info| {
        Ok(Box::new(Unique {
            axis: info.attr_int_opt("axis")?,
            sorted: info.attr_int("sorted", 1)? != 0,
            outputs: info.node.outputs.len(),
        }))
    });
}

/// ONNX `TopK`, opsets 1-24: the `k` largest (or, from opset 11, smallest with `largest`=0)
/// elements along `axis` and their int64 indices. `k` is an attribute in opset 1 and input 1
/// from 10. Ties go to the lower index; results are always sorted (which `sorted`=0 allows).
struct TopK {
    k_attr: Option<i64>,
    axis: i64,
    largest: bool,
}

fn build_top_k(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let k_attr = if info.opset < 10 {
        Some(
            info.attr_int_opt("k")?
                .ok_or_else(|| OpError::attribute("k", "is required"))?,
        )
    } else {
        None
    };
    Ok(Box::new(TopK {
        k_attr,
        axis: info.attr_int("axis", -1)?,
        largest: info.attr_int("largest", 1)? != 0,
    }))
}

impl Kernel for TopK {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let k = match self.k_attr {
            Some(k) => k,
            None => int_scalar_input(inputs.tensor(1)?, 1)?,
        };
        let axis = normalize_axis(self.axis, x.rank())?;
        let len = x.shape()[axis];
        let k = usize::try_from(k)
            .ok()
            .filter(|&k| k <= len)
            .ok_or_else(|| OpError::invalid(format!("k = {k} is outside 0..={len}")))?;
        let mut shape = Shape::from_slice(x.shape());
        shape[axis] = k;
        let task = Select {
            x,
            outer: product(&x.shape()[..axis]),
            len,
            inner: product(&x.shape()[axis + 1..]),
            k,
            largest: self.largest,
        };
        let (values, indices) = with_ord_type(x.dtype(), task)??;
        Ok(vec![
            Tensor::new(shape.clone(), values)?.into(),
            Tensor::from_vec(shape, indices)?.into(),
        ])
    }
}

struct Select<'a> {
    x: &'a Tensor,
    outer: usize,
    len: usize,
    inner: usize,
    k: usize,
    largest: bool,
}

impl OrdFn for Select<'_> {
    type Out = Result<(TensorData, Vec<i64>), OpError>;
    fn call<T: Elem + PartialOrd>(self) -> Self::Out {
        let src = self.x.as_slice::<T>()?;
        let out_block = self.k * self.inner;
        let mut values = vec![T::default(); self.outer * out_block];
        let mut indices = vec![0i64; self.outer * out_block];
        if out_block == 0 {
            return Ok((T::wrap(values), indices));
        }
        let in_block = self.len * self.inner;
        let select_block = |(o, (vals, idxs)): (usize, (&mut [T], &mut [i64]))| {
            let block = &src[o * in_block..(o + 1) * in_block];
            let mut lane: Vec<usize> = Vec::with_capacity(self.len);
            for i in 0..self.inner {
                let at = |j: usize| &block[j * self.inner + i];
                let cmp = |a: &usize, b: &usize| {
                    let by_value = order(at(*a), at(*b));
                    let by_value = if self.largest {
                        by_value.reverse()
                    } else {
                        by_value
                    };
                    by_value.then(a.cmp(b))
                };
                lane.clear();
                lane.extend(0..self.len);
                if self.k < self.len {
                    lane.select_nth_unstable_by(self.k - 1, cmp);
                    lane.truncate(self.k);
                }
                lane.sort_unstable_by(cmp);
                for (r, &j) in lane.iter().enumerate() {
                    vals[r * self.inner + i] = at(j).clone();
                    idxs[r * self.inner + i] = j as i64;
                }
            }
        };
        let blocks = values
            .chunks_mut(out_block)
            .zip(indices.chunks_mut(out_block));
        if self.outer > 1 && src.len() >= PARALLEL_MIN {
            let blocks = values
                .par_chunks_mut(out_block)
                .zip(indices.par_chunks_mut(out_block));
            blocks.enumerate().for_each(select_block);
        } else {
            blocks.enumerate().for_each(select_block);
        }
        Ok((T::wrap(values), indices))
    }
}

/// ONNX `Unique`, opsets 11-28: the distinct elements (or, with `axis`, the distinct slices
/// along it) of the input, sorted ascending (`sorted`=1, default) or in order of first
/// occurrence, with the int64 outputs `indices` (first occurrence of each), `inverse_indices`
/// (the unique entry of each input element or slice) and `counts`.
struct Unique {
    axis: Option<i64>,
    sorted: bool,
    outputs: usize,
}

impl Kernel for Unique {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let (x, axis) = match self.axis {
            Some(a) => (x.clone(), normalize_axis(a, x.rank())?),
            None => (x.reshape([x.len()])?, 0),
        };
        let groups = with_ord_type(x.dtype(), Group { x: &x, axis })??;
        let groups = if self.sorted {
            groups
        } else {
            groups.by_first_occurrence()
        };
        let y = take_along(&x, axis, &groups.first)?;
        let n = groups.first.len();
        let ints =
            |v: Vec<i64>| -> Result<Value, OpError> { Ok(Tensor::from_vec([v.len()], v)?.into()) };
        let mut out = vec![
            y.into(),
            ints(groups.first.iter().map(|&i| i as i64).collect())?,
            ints(groups.inverse.iter().map(|&g| g as i64).collect())?,
            ints(groups.counts.iter().map(|&c| c as i64).collect())?,
        ];
        debug_assert_eq!(groups.counts.len(), n);
        out.truncate(self.outputs.max(1));
        Ok(out)
    }
}

/// Equal items grouped, in ascending order of the items.
struct Groups {
    /// Position of each group's first item.
    first: Vec<usize>,
    /// Group of each item.
    inverse: Vec<usize>,
    counts: Vec<usize>,
}

impl Groups {
    /// The same groups renumbered in order of their first occurrence.
    fn by_first_occurrence(self) -> Groups {
        let mut order: Vec<usize> = (0..self.first.len()).collect();
        order.sort_by_key(|&g| self.first[g]);
        let mut renumber = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new;
        }
        Groups {
            first: order.iter().map(|&g| self.first[g]).collect(),
            inverse: self.inverse.iter().map(|&g| renumber[g]).collect(),
            counts: order.iter().map(|&g| self.counts[g]).collect(),
        }
    }
}

/// Groups the slices of `x` along `axis`.
struct Group<'a> {
    x: &'a Tensor,
    axis: usize,
}

impl OrdFn for Group<'_> {
    type Out = Result<Groups, OpError>;
    fn call<T: Elem + PartialOrd>(self) -> Self::Out {
        let shape = self.x.shape();
        let n = shape[self.axis];
        // Lay each slice out contiguously: [outer, n, inner] -> [n, outer, inner].
        let split = [
            product(&shape[..self.axis]),
            n,
            product(&shape[self.axis + 1..]),
        ];
        let items = gather_view(
            self.x.as_slice::<T>()?,
            &StridedView::contiguous(&split).permuted(&[1, 0, 2]),
        );
        let size = split[0] * split[2];
        let item = |i: usize| &items[i * size..(i + 1) * size];
        let compare = |a: usize, b: usize| -> Ordering {
            item(a)
                .iter()
                .zip(item(b))
                .map(|(p, q)| order(p, q))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        };
        let mut sorted: Vec<usize> = (0..n).collect();
        sorted.sort_by(|&a, &b| compare(a, b).then(a.cmp(&b)));
        let mut groups = Groups {
            first: Vec::new(),
            inverse: vec![0; n],
            counts: Vec::new(),
        };
        for (pos, &i) in sorted.iter().enumerate() {
            if pos == 0 || compare(sorted[pos - 1], i).is_ne() {
                groups.first.push(i);
                groups.counts.push(0);
            }
            let g = groups.first.len() - 1;
            groups.inverse[i] = g;
            groups.counts[g] += 1;
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(k: &dyn Kernel, inputs: Vec<Tensor>) -> Vec<Tensor> {
        let values = inputs.into_iter().map(|t| Some(t.into())).collect();
        k.run(Inputs::new(values))
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect()
    }

    #[test]
    fn top_k_ties_and_nan() {
        let x = Tensor::from_vec([2, 4], vec![1f32, 3., 3., f32::NAN, 0., -1., 0., 2.]).unwrap();
        let k = TopK {
            k_attr: Some(2),
            axis: -1,
            largest: true,
        };
        let out = outputs(&k, vec![x.clone()]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[3, 1, 3, 0]);
        let k = TopK {
            k_attr: Some(3),
            axis: 1,
            largest: false,
        };
        let out = outputs(&k, vec![x]);
        assert_eq!(out[0].as_slice::<f32>().unwrap()[..3], [1., 3., 3.]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[0, 1, 2, 1, 0, 2]);
    }

    #[test]
    fn unique_spec_examples() {
        // Example 1: not sorted.
        let x = Tensor::from_vec([6], vec![2f32, 1., 1., 3., 4., 3.]).unwrap();
        let k = Unique {
            axis: None,
            sorted: false,
            outputs: 4,
        };
        let out = outputs(&k, vec![x]);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2., 1., 3., 4.]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[0, 1, 3, 4]);
        assert_eq!(out[2].as_slice::<i64>().unwrap(), &[0, 1, 1, 2, 3, 2]);
        assert_eq!(out[3].as_slice::<i64>().unwrap(), &[1, 2, 2, 1]);
        // Example 4: sorted along axis 1.
        let x = Tensor::from_vec(
            [2, 4, 2],
            vec![
                1f32, 1., 0., 1., 2., 1., 0., 1., 1., 1., 0., 1., 2., 1., 0., 1.,
            ],
        )
        .unwrap();
        let k = Unique {
            axis: Some(1),
            sorted: true,
            outputs: 4,
        };
        let out = outputs(&k, vec![x]);
        assert_eq!(out[0].shape(), &[2, 3, 2]);
        assert_eq!(
            out[0].as_slice::<f32>().unwrap(),
            &[0., 1., 1., 1., 2., 1., 0., 1., 1., 1., 2., 1.]
        );
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[1, 0, 2]);
        assert_eq!(out[2].as_slice::<i64>().unwrap(), &[1, 0, 2, 0]);
        assert_eq!(out[3].as_slice::<i64>().unwrap(), &[2, 1, 1]);
    }
}
