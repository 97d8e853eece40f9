//! ScatterElements, ScatterND and the deprecated Scatter: the data with some elements (or
//! blocks) replaced or combined with updates. Updates apply in index order, so with duplicate
//! indices and no reduction the last one wins.

use runnx_ir::{Shape, Tensor, TensorData, Value};

use super::dispatch::{with_any_type, with_num_type, AnyFn, Elem, Num, NumFn};
use super::gather::{element_offsets, nd_index};
use super::{ints_input, normalize_axis, normalize_index};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions(
        "",
        "ScatterElements",
        &[11, 13, 16, 18],
        build_scatter_elements,
    );
    reg.add_versions("", "Scatter", &[9, 11], build_scatter_elements);
    reg.add_versions("", "ScatterND", &[11, 13, 16, 18], |info| {
        Ok(Box::new(ScatterNd {
            reduction: reduction(info)?,
        }))
    });
}

/// How an update combines with the element it lands on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Reduction {
    fn apply<T: Num>(self, into: &mut T, update: T) {
        *into = match self {
            Reduction::None => update,
            Reduction::Add => into.add(update),
            Reduction::Mul => into.mul(update),
            Reduction::Max if update > *into => update,
            Reduction::Min if update < *into => update,
            Reduction::Max | Reduction::Min => *into,
        };
    }
}

/// The `reduction` attribute (opset 16: none, add, mul; 18: max, min).
fn reduction(info: &NodeInfo) -> Result<Reduction, OpError> {
    Ok(match info.attr_string("reduction", "none")?.as_str() {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => {
            return Err(OpError::attribute(
                "reduction",
                format!("unknown reduction '{other}'"),
            ))
        }
    })
}

/// ONNX `ScatterElements`, opsets 11-18, and `Scatter`, opsets 9-11: `out = data`, then for
/// each position `p` of the indices, `out[p with p[axis] = indices[p]] (reduce)= updates[p]`.
/// Indices and updates share a shape that fits inside the data outside `axis`.
struct ScatterElements {
    axis: i64,
    reduction: Reduction,
}

fn build_scatter_elements(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ScatterElements {
        axis: info.attr_int("axis", 0)?,
        reduction: reduction(info)?,
    }))
}

impl Kernel for ScatterElements {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (idx, updates) = (inputs.tensor(1)?.clone(), inputs.tensor(2)?.clone());
        let data = inputs.take_tensor(0)?;
        let axis = normalize_axis(self.axis, data.rank())?;
        if idx.shape() != updates.shape() {
            return Err(OpError::invalid(format!(
                "indices {:?} and updates {:?} differ in shape",
                idx.shape(),
                updates.shape()
            )));
        }
        let fits = idx.rank() == data.rank()
            && (0..data.rank()).all(|d| d == axis || idx.shape()[d] <= data.shape()[d]);
        if !fits {
            return Err(OpError::invalid(format!(
                "indices of shape {:?} do not fit data of shape {:?}",
                idx.shape(),
                data.shape()
            )));
        }
        let positions: Vec<usize> = ints_input(&idx, 1)?
            .into_iter()
            .map(|i| normalize_index(i, data.shape()[axis]))
            .collect::<Result<_, _>>()?;
        let offsets = element_offsets(data.shape(), idx.shape(), axis, &positions);
        Ok(vec![
            scatter(data, &updates, &offsets, 1, self.reduction)?.into()
        ])
    }
}

/// ONNX `ScatterND`, opsets 11-18: `out = data`, then each length-`k` row of the indices
/// selects a block `out[i_1, .., i_k, ..]` that is replaced (or reduced) with the matching
/// block of the updates, whose shape is `indices.shape[..-1] + data.shape[k..]`.
struct ScatterNd {
    reduction: Reduction,
}

impl Kernel for ScatterNd {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (idx, updates) = (inputs.tensor(1)?.clone(), inputs.tensor(2)?.clone());
        let data = inputs.take_tensor(0)?;
        let nd = nd_index(data.shape(), &idx, 0)?;
        if updates.shape() != nd.shape.as_slice() {
            return Err(OpError::input(
                2,
                format!(
                    "expected updates of shape {:?}, got {:?}",
                    nd.shape,
                    updates.shape()
                ),
            ));
        }
        Ok(vec![scatter(
            data,
            &updates,
            &nd.offsets,
            nd.block,
            self.reduction,
        )?
        .into()])
    }
}

/// `data[offsets[j] + i] (reduce)= updates[j * block + i]` in order, reusing data's buffer.
fn scatter(
    data: Tensor,
    updates: &Tensor,
    offsets: &[usize],
    block: usize,
    reduction: Reduction,
) -> Result<Tensor, OpError> {
    if updates.dtype() != data.dtype() {
        return Err(OpError::input(
            2,
            format!(
                "expected {} like the data, got {}",
                data.dtype(),
                updates.dtype()
            ),
        ));
    }
    let shape = Shape::from_slice(data.shape());
    let dtype = data.dtype();
    let task = Scatter {
        data,
        updates,
        offsets,
        block,
        reduction,
    };
    let out = if reduction == Reduction::None {
        with_any_type(dtype, task)?
    } else {
        with_num_type(dtype, task)??
    };
    Ok(Tensor::new(shape, out)?)
}

struct Scatter<'a> {
    data: Tensor,
    updates: &'a Tensor,
    offsets: &'a [usize],
    block: usize,
    reduction: Reduction,
}

impl Scatter<'_> {
    fn run<T: Elem>(self, combine: impl Fn(&mut T, &T)) -> Result<TensorData, OpError> {
        let updates = self.updates.as_slice::<T>()?;
        let mut out = self.data.into_vec::<T>()?;
        for (&at, update) in self
            .offsets
            .iter()
            .zip(updates.chunks_exact(self.block.max(1)))
        {
            for (o, u) in out[at..at + self.block].iter_mut().zip(update) {
                combine(o, u);
            }
        }
        Ok(T::wrap(out))
    }
}

impl AnyFn for Scatter<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        self.run::<T>(|o, u| o.clone_from(u))
    }
}

impl NumFn for Scatter<'_> {
    type Out = Result<TensorData, OpError>;
    fn call<T: Num>(self) -> Self::Out {
        let reduction = self.reduction;
        self.run::<T>(move |o, u| reduction.apply(o, *u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &dyn Kernel, inputs: Vec<Tensor>) -> Result<Vec<f32>, OpError> {
        let values = inputs.into_iter().map(|t| Some(t.into())).collect();
        let y = k.run(Inputs::new(values))?.remove(0).into_tensor().unwrap();
        Ok(y.as_slice::<f32>().unwrap().to_vec())
    }

    #[test]
    fn scatter_elements_with_duplicates_and_reductions() {
        let data = || Tensor::from_vec([1, 5], vec![1f32, 2., 3., 4., 5.]).unwrap();
        let idx = || Tensor::from_vec([1, 2], vec![1i64, -4]).unwrap();
        let upd = || Tensor::from_vec([1, 2], vec![1.1f32, 2.1]).unwrap();
        let k = |reduction| ScatterElements { axis: 1, reduction };
        assert_eq!(
            run(&k(Reduction::None), vec![data(), idx(), upd()]).unwrap(),
            [1., 2.1, 3., 4., 5.]
        );
        assert_eq!(
            run(&k(Reduction::Add), vec![data(), idx(), upd()]).unwrap(),
            [1., 5.2, 3., 4., 5.]
        );
        assert_eq!(
            run(&k(Reduction::Max), vec![data(), idx(), upd()]).unwrap(),
            [1., 2.1, 3., 4., 5.]
        );
        assert_eq!(
            run(&k(Reduction::Min), vec![data(), idx(), upd()]).unwrap(),
            [1., 1.1, 3., 4., 5.]
        );
        let bad = Tensor::from_vec([1, 2], vec![1i64, 5]).unwrap();
        assert!(run(&k(Reduction::None), vec![data(), bad, upd()]).is_err());
    }

    #[test]
    fn scatter_nd_blocks() {
        let data = Tensor::from_vec([4], vec![1f32, 2., 3., 4.]).unwrap();
        let idx = Tensor::from_vec([2, 1], vec![3i64, 1]).unwrap();
        let upd = Tensor::from_vec([2], vec![9f32, 10.]).unwrap();
        let k = ScatterNd {
            reduction: Reduction::Mul,
        };
        assert_eq!(run(&k, vec![data, idx, upd]).unwrap(), [1., 20., 3., 36.]);
    }
}
