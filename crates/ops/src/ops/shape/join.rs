//! Concat and Split: block copies along one axis.

use runnx_ir::{Shape, Tensor, Value};

use super::copy::{concat_rows, product, view_tensor, StridedView};
use super::dispatch::{with_any_type, AnyFn, Elem};
use super::{ints_input, normalize_axis, same_dtype};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Concat", &[1, 4, 11, 13], build_concat);
    reg.add_versions("", "Split", &[1, 2, 11, 13, 18], build_split);
}

/// ONNX `Concat`, opsets 1-13: joins the inputs along `axis` (default 1 in opset 1, required
/// later, negative from 11). All inputs share the type and every other dimension.
struct Concat {
    axis: i64,
}

fn build_concat(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let axis = match info.attr_int_opt("axis")? {
        Some(a) => a,
        None if info.opset < 4 => 1,
        None => return Err(OpError::attribute("axis", "is required")),
    };
    Ok(Box::new(Concat { axis }))
}

impl Kernel for Concat {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let parts: Vec<&Tensor> = (0..inputs.len())
            .map(|i| inputs.tensor(i))
            .collect::<Result<_, _>>()?;
        let first = *parts
            .first()
            .ok_or_else(|| OpError::invalid("Concat needs at least one input"))?;
        same_dtype(parts.iter().copied().enumerate())?;
        let axis = normalize_axis(self.axis, first.rank())?;
        let mut shape = Shape::from_slice(first.shape());
        shape[axis] = 0;
        for (i, p) in parts.iter().enumerate() {
            let same_rest = p.rank() == first.rank()
                && (0..p.rank()).all(|d| d == axis || p.shape()[d] == first.shape()[d]);
            if !same_rest {
                return Err(OpError::input(
                    i,
                    format!(
                        "shape {:?} does not match {:?} outside axis {axis}",
                        p.shape(),
                        first.shape()
                    ),
                ));
            }
            shape[axis] += p.shape()[axis];
        }
        if parts.len() == 1 {
            return Ok(vec![first.clone().into()]);
        }
        let outer = product(&shape[..axis]);
        let blocks: Vec<usize> = parts.iter().map(|p| product(&p.shape()[axis..])).collect();
        let data = with_any_type(
            first.dtype(),
            ConcatFn {
                parts: &parts,
                blocks: &blocks,
                outer,
            },
        )?;
        Ok(vec![Tensor::new(shape, data)?.into()])
    }
}

struct ConcatFn<'a> {
    parts: &'a [&'a Tensor],
    blocks: &'a [usize],
    outer: usize,
}

impl AnyFn for ConcatFn<'_> {
    type Out = Result<runnx_ir::TensorData, OpError>;
    fn call<T: Elem>(self) -> Self::Out {
        let slices: Vec<&[T]> = self
            .parts
            .iter()
            .map(|p| p.as_slice::<T>())
            .collect::<Result<_, _>>()?;
        Ok(T::wrap(concat_rows(&slices, self.blocks, self.outer)))
    }
}

/// ONNX `Split`, opsets 1-18: cuts the input along `axis` (negative from 11) into one part per
/// output. Sizes come from `split` (attribute before opset 13, optional input 1 in opsets 1 and
/// 13+); otherwise equal parts (`num_outputs` from opset 18, else the output count), the last
/// one smaller when the axis does not divide evenly.
struct Split {
    axis: i64,
    split_attr: Option<Vec<i64>>,
    split_input: bool,
    outputs: usize,
}

fn build_split(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let outputs = info.node.outputs.len();
    if let Some(n) = info.attr_int_opt("num_outputs")? {
        if n as usize != outputs {
            return Err(OpError::attribute(
                "num_outputs",
                format!("is {n} but the node has {outputs} outputs"),
            ));
        }
    }
    Ok(Box::new(Split {
        axis: info.attr_int("axis", 0)?,
        split_attr: if info.opset < 13 {
            info.attr_ints_opt("split")?
        } else {
            None
        },
        split_input: info.opset < 2 || info.opset >= 13,
        outputs,
    }))
}

impl Split {
    /// The size of each part of an axis of `len`.
    fn sizes(&self, len: usize, inputs: &Inputs) -> Result<Vec<usize>, OpError> {
        let explicit = match (&self.split_attr, inputs.opt_tensor(1)?) {
            (_, Some(t)) if self.split_input => Some(ints_input(t, 1)?),
            (Some(s), _) => Some(s.clone()),
            _ => None,
        };
        if let Some(split) = explicit {
            let sizes = super::dims_from_i64(&split, "split")?;
            if sizes.len() != self.outputs || sizes.iter().sum::<usize>() != len {
                return Err(OpError::invalid(format!(
                    "split {split:?} does not cut an axis of {len} into {} outputs",
                    self.outputs
                )));
            }
            return Ok(sizes.to_vec());
        }
        let n = self.outputs.max(1);
        let chunk = len.div_ceil(n);
        let last = len as i64 - (chunk * (n - 1)) as i64;
        if last < 0 {
            return Err(OpError::invalid(format!(
                "cannot split an axis of {len} into {n} parts"
            )));
        }
        let mut sizes = vec![chunk; n];
        sizes[n - 1] = last as usize;
        Ok(sizes)
    }
}

impl Kernel for Split {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.tensor(0)?;
        let axis = normalize_axis(self.axis, x.rank())?;
        let sizes = self.sizes(x.shape()[axis], &inputs)?;
        let whole = StridedView::contiguous(x.shape());
        let mut start = 0;
        sizes
            .iter()
            .map(|&size| {
                let mut part = whole.clone();
                part.shape[axis] = size;
                part.offset = start * whole.strides[axis] as usize;
                start += size;
                Ok(view_tensor(x, &part)?.into())
            })
            .collect()
    }
}
