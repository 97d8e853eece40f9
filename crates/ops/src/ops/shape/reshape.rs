//! Ops that change only a shape and never copy data (Reshape, Squeeze, Unsqueeze, Flatten,
//! Identity), and the ops that read a shape (Shape, Size).

use runnx_ir::{Shape, Tensor, Value};

use super::{ints_input, normalize_axes};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "Reshape", &[1, 5, 14], build_reshape);
    reg.add_versions("", "Shape", &[1, 15], build_shape);
    reg.add("", "Size", 1, |_| Ok(Box::new(Size)));
    reg.add_versions("", "Squeeze", &[1, 11, 13], build_squeeze);
    reg.add_versions("", "Unsqueeze", &[1, 11, 13], build_unsqueeze);
    reg.add_versions("", "Flatten", &[1, 9, 11], build_flatten);
    reg.add_versions("", "Identity", &[1, 14, 16], |_| Ok(Box::new(Identity)));
}

/// ONNX `Reshape`, opsets 1-25. Opset 1-4 take the target shape from the `shape` attribute,
/// later ones from input 1. A 0 copies the input's dimension (unless `allowzero`=1, opset 14+,
/// where it means 0) and one -1 is inferred. Shares the input's buffer.
struct Reshape {
    shape_attr: Option<Vec<i64>>,
    allow_zero: bool,
}

fn build_reshape(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let shape_attr = if info.opset < 5 {
        Some(
            info.attr_ints_opt("shape")?
                .ok_or_else(|| OpError::attribute("shape", "is required"))?,
        )
    } else {
        None
    };
    Ok(Box::new(Reshape {
        shape_attr,
        allow_zero: info.attr_int("allowzero", 0)? != 0,
    }))
}

impl Kernel for Reshape {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        let spec = match &self.shape_attr {
            Some(s) => s.clone(),
            None => ints_input(inputs.tensor(1)?, 1)?,
        };
        let shape = reshape_target(x.shape(), &spec, self.allow_zero)?;
        Ok(vec![x.reshape(shape)?.into()])
    }
}

/// The shape `spec` asks for, for an input of shape `input` (see [`Reshape`]).
fn reshape_target(input: &[usize], spec: &[i64], allow_zero: bool) -> Result<Shape, OpError> {
    let mut shape = Shape::with_capacity(spec.len());
    let mut inferred = None;
    for (i, &d) in spec.iter().enumerate() {
        let dim = match d {
            -1 if inferred.is_some() => return Err(OpError::invalid("shape has more than one -1")),
            -1 => {
                inferred = Some(i);
                1
            }
            0 if !allow_zero => *input.get(i).ok_or_else(|| {
                OpError::invalid(format!(
                    "shape copies dimension {i} (0) of a rank-{} input",
                    input.len()
                ))
            })?,
            d if d < 0 => {
                return Err(OpError::invalid(format!(
                    "shape has a negative dimension {d}"
                )))
            }
            d => d as usize,
        };
        shape.push(dim);
    }
    let total: usize = input.iter().product();
    let known: usize = shape.iter().product();
    if let Some(i) = inferred {
        if total.checked_rem(known) != Some(0) {
            return Err(OpError::invalid(format!(
                "cannot infer the -1 in {spec:?} for an input of shape {input:?}"
            )));
        }
        shape[i] = total / known;
    } else if known != total {
        return Err(OpError::invalid(format!(
            "cannot reshape {input:?} to {spec:?}"
        )));
    }
    Ok(shape)
}

/// ONNX `Shape`, opsets 1-25: the input's shape as int64, from opset 15 only dimensions
/// `start..end` (negative counting from the end, clamped to the rank).
struct ShapeOp {
    start: i64,
    end: Option<i64>,
}

fn build_shape(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ShapeOp {
        start: info.attr_int("start", 0)?,
        end: info.attr_int_opt("end")?,
    }))
}

impl Kernel for ShapeOp {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let shape = input_shape(&inputs)?;
        let rank = shape.len() as i64;
        let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
        let start = clamp(self.start);
        let end = clamp(self.end.unwrap_or(rank)).max(start);
        let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
        Ok(vec![Tensor::from_vec([dims.len()], dims)?.into()])
    }
}

/// The shape of input 0, which Shape and Size accept as a tensor or a sparse-free value.
fn input_shape(inputs: &Inputs) -> Result<Shape, OpError> {
    Ok(Shape::from_slice(inputs.tensor(0)?.shape()))
}

/// ONNX `Size`, opsets 1-25: the element count as an int64 scalar.
struct Size;

impl Kernel for Size {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let n = input_shape(&inputs)?.iter().product::<usize>();
        Ok(vec![Tensor::scalar(n as i64).into()])
    }
}

/// ONNX `Squeeze`, opsets 1-25: removes the size-1 dimensions `axes` (attribute before opset
/// 13, input from 13; negative from 11), or all size-1 dimensions when absent.
struct Squeeze {
    axes_attr: Option<Vec<i64>>,
    axes_input: bool,
}

fn build_squeeze(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Squeeze {
        axes_attr: if info.opset < 13 {
            info.attr_ints_opt("axes")?
        } else {
            None
        },
        axes_input: info.opset >= 13,
    }))
}

/// The axes of an op that takes them as an attribute before some opset and as input 1 after.
fn axes_of(
    attr: &Option<Vec<i64>>,
    from_input: bool,
    inputs: &Inputs,
) -> Result<Option<Vec<i64>>, OpError> {
    if from_input {
        inputs.opt_tensor(1)?.map(|t| ints_input(t, 1)).transpose()
    } else {
        Ok(attr.clone())
    }
}

impl Kernel for Squeeze {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let axes = axes_of(&self.axes_attr, self.axes_input, &inputs)?;
        let x = inputs.take_tensor(0)?;
        let shape: Shape = match axes {
            None => x.shape().iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let axes = normalize_axes(&axes, x.rank())?;
                if let Some(&a) = axes.iter().find(|&&a| x.shape()[a] != 1) {
                    return Err(OpError::invalid(format!(
                        "cannot squeeze axis {a} of size {} in {:?}",
                        x.shape()[a],
                        x.shape()
                    )));
                }
                (0..x.rank())
                    .filter(|d| !axes.contains(d))
                    .map(|d| x.shape()[d])
                    .collect()
            }
        };
        Ok(vec![x.reshape(shape)?.into()])
    }
}

/// ONNX `Unsqueeze`, opsets 1-25: inserts size-1 dimensions at `axes` of the output
/// (attribute before opset 13, input from 13; negative from 11).
struct Unsqueeze {
    axes_attr: Option<Vec<i64>>,
    axes_input: bool,
}

fn build_unsqueeze(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let axes_input = info.opset >= 13;
    let axes_attr = if axes_input {
        None
    } else {
        Some(
            info.attr_ints_opt("axes")?
                .ok_or_else(|| OpError::attribute("axes", "is required"))?,
        )
    };
    Ok(Box::new(Unsqueeze {
        axes_attr,
        axes_input,
    }))
}

impl Kernel for Unsqueeze {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let axes = axes_of(&self.axes_attr, self.axes_input, &inputs)?
            .ok_or_else(|| OpError::input(1, "axes are required"))?;
        let x = inputs.take_tensor(0)?;
        let rank = x.rank() + axes.len();
        let axes = normalize_axes(&axes, rank)?;
        let mut dims = x.shape().iter();
        let shape: Shape = (0..rank)
            .map(|d| {
                if axes.contains(&d) {
                    1
                } else {
                    dims.next().copied().unwrap_or(1)
                }
            })
            .collect();
        Ok(vec![x.reshape(shape)?.into()])
    }
}

/// ONNX `Flatten`, opsets 1-25: a 2-D view `[d_0 * .. * d_(axis-1), d_axis * .. * d_n]`;
/// `axis` in `0..=rank`, negative from opset 11.
struct Flatten {
    axis: i64,
}

fn build_flatten(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(Flatten {
        axis: info.attr_int("axis", 1)?,
    }))
}

impl Kernel for Flatten {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let x = inputs.take_tensor(0)?;
        // Axis in -rank..=rank; `rank` puts everything in the first dimension.
        let rank = x.rank() as i64;
        if self.axis < -rank || self.axis > rank {
            return Err(OpError::invalid(format!(
                "axis {} is out of range for rank {rank}",
                self.axis
            )));
        }
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        } as usize;
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis..].iter().product();
        Ok(vec![x.reshape([outer, inner])?.into()])
    }
}

/// ONNX `Identity`, opsets 1-25: passes any value through (tensors, and from opset 14
/// sequences, from 16 optionals) without copying.
struct Identity;

impl Kernel for Identity {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let v = inputs
            .take_value(0)
            .ok_or_else(|| OpError::input(0, "is required but missing"))?;
        Ok(vec![v])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_targets() {
        assert_eq!(
            reshape_target(&[2, 3, 4], &[0, -1], false)
                .unwrap()
                .as_slice(),
            &[2, 12]
        );
        assert_eq!(
            reshape_target(&[2, 3, 4], &[4, 0, 2], false)
                .unwrap()
                .as_slice(),
            &[4, 3, 2]
        );
        assert_eq!(
            reshape_target(&[0, 3], &[3, 0], true).unwrap().as_slice(),
            &[3, 0]
        );
        assert!(reshape_target(&[2, 3], &[], false).is_err());
        assert!(reshape_target(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[0, 0, 0], false).is_err());
        assert!(reshape_target(&[0, 3], &[0, -1], true).is_err());
        assert_eq!(
            reshape_target(&[1], &[], false).unwrap().as_slice(),
            &[] as &[usize]
        );
    }
}
