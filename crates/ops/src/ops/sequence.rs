//! Sequences and optionals: SequenceEmpty/Construct/At/Insert/Erase/Length, SplitToSequence,
//! ConcatFromSequence, SequenceMap, Optional, OptionalHasElement, OptionalGetElement.

use std::sync::Arc;

use runnx_ir::{DataType, Tensor, TensorData, TensorType, Value, ValueType};

use crate::context::{captured_positions, implicit_input_names};
use crate::ops::control::index_along;
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry, Subgraph};

pub(crate) fn register(reg: &mut Registry) {
    reg.add("", "SequenceEmpty", 11, build_empty);
    reg.add("", "SequenceConstruct", 11, |_| Ok(Box::new(Construct)));
    reg.add("", "SequenceAt", 11, |_| Ok(Box::new(At)));
    reg.add("", "SequenceInsert", 11, |_| Ok(Box::new(Insert)));
    reg.add("", "SequenceErase", 11, |_| Ok(Box::new(Erase)));
    reg.add("", "SequenceLength", 11, |_| Ok(Box::new(Length)));
    reg.add_versions("", "SplitToSequence", &[11, 24], build_split);
    reg.add("", "ConcatFromSequence", 11, build_concat);
    reg.add("", "SequenceMap", 17, build_map);
    reg.add_versions("", "Optional", &[15, 28], build_optional);
    reg.add_versions("", "OptionalHasElement", &[15, 18, 28], |_| {
        Ok(Box::new(HasElement))
    });
    reg.add_versions("", "OptionalGetElement", &[15, 18, 28], |_| {
        Ok(Box::new(GetElement))
    });
}

fn items_of(v: &Value, index: usize) -> Result<(&ValueType, &[Value]), OpError> {
    match v {
        Value::Sequence { elem_type, items } => Ok((elem_type, items)),
        other => Err(OpError::input(
            index,
            format!("expected a sequence, got {}", other.describe()),
        )),
    }
}

fn tensor_type(dtype: DataType) -> ValueType {
    ValueType::Tensor(TensorType { dtype, shape: None })
}

/// A position input (int32 or int64 scalar), negative counting from the end; `len_ok` allows
/// the one-past-the-end position (SequenceInsert).
fn position(t: &Tensor, len: usize, len_ok: bool) -> Result<usize, OpError> {
    let p = *t
        .to_i64_vec()?
        .first()
        .ok_or_else(|| OpError::invalid("position is empty"))?;
    let n = len as i64;
    let resolved = if p < 0 { p + n } else { p };
    let max = if len_ok { n } else { n - 1 };
    if resolved < 0 || resolved > max {
        return Err(OpError::invalid(format!(
            "position {p} is out of range for a sequence of {len}"
        )));
    }
    Ok(resolved as usize)
}

struct Empty(DataType);

fn build_empty(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let code = info.attr_int("dtype", DataType::Float as i64)?;
    let dtype = DataType::from_onnx(code as i32)
        .ok_or_else(|| OpError::attribute("dtype", format!("unknown type {code}")))?;
    Ok(Box::new(Empty(dtype)))
}

impl Kernel for Empty {
    fn run(&self, _: Inputs) -> Result<Vec<Value>, OpError> {
        Ok(vec![Value::Sequence {
            elem_type: tensor_type(self.0),
            items: Vec::new(),
        }])
    }
}

struct Construct;

impl Kernel for Construct {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let mut items = Vec::with_capacity(inputs.len());
        let mut dtype = None;
        for i in 0..inputs.len() {
            let t = inputs.tensor(i)?;
            if *dtype.get_or_insert(t.dtype()) != t.dtype() {
                return Err(OpError::input(
                    i,
                    "all elements of a sequence must have one element type",
                ));
            }
            items.push(Value::Tensor(t.clone()));
        }
        let dtype =
            dtype.ok_or_else(|| OpError::invalid("SequenceConstruct needs at least one input"))?;
        Ok(vec![Value::Sequence {
            elem_type: tensor_type(dtype),
            items,
        }])
    }
}

struct At;

impl Kernel for At {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (_, items) = items_of(inputs.value(0)?, 0)?;
        let p = position(inputs.tensor(1)?, items.len(), false)?;
        Ok(vec![items[p].clone()])
    }
}

struct Insert;

impl Kernel for Insert {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let value = inputs.tensor(1)?.clone();
        let seq = inputs
            .take_value(0)
            .ok_or_else(|| OpError::input(0, "is required but missing"))?;
        let (elem_type, mut items) = match seq {
            Value::Sequence { elem_type, items } => (elem_type, items),
            other => {
                return Err(OpError::input(
                    0,
                    format!("expected a sequence, got {}", other.describe()),
                ))
            }
        };
        if let ValueType::Tensor(tt) = &elem_type {
            if tt.dtype != value.dtype() {
                return Err(OpError::input(
                    1,
                    format!("a sequence of {} cannot take a {}", tt.dtype, value.dtype()),
                ));
            }
        }
        let p = match inputs.opt_tensor(2)? {
            Some(t) => position(t, items.len(), true)?,
            None => items.len(),
        };
        items.insert(p, Value::Tensor(value));
        Ok(vec![Value::Sequence { elem_type, items }])
    }
}

struct Erase;

impl Kernel for Erase {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let pos = inputs.opt_tensor(1)?.cloned();
        let seq = inputs
            .take_value(0)
            .ok_or_else(|| OpError::input(0, "is required but missing"))?;
        let (elem_type, mut items) = match seq {
            Value::Sequence { elem_type, items } => (elem_type, items),
            other => {
                return Err(OpError::input(
                    0,
                    format!("expected a sequence, got {}", other.describe()),
                ))
            }
        };
        if items.is_empty() {
            return Err(OpError::input(0, "cannot erase from an empty sequence"));
        }
        let p = match pos {
            Some(t) => position(&t, items.len(), false)?,
            None => items.len() - 1,
        };
        items.remove(p);
        Ok(vec![Value::Sequence { elem_type, items }])
    }
}

struct Length;

impl Kernel for Length {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (_, items) = items_of(inputs.value(0)?, 0)?;
        Ok(vec![Value::Tensor(Tensor::scalar(items.len() as i64))])
    }
}

struct SplitToSequence {
    axis: i64,
    keepdims: bool,
}

fn build_split(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(SplitToSequence {
        axis: info.attr_int("axis", 0)?,
        keepdims: info.attr_int("keepdims", 1)? != 0,
    }))
}

impl Kernel for SplitToSequence {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let t = inputs.tensor(0)?;
        let axis = normalize_axis(self.axis, t.rank())?;
        let dim = t.shape()[axis];
        let split = inputs.opt_tensor(1)?;
        let lengths: Vec<usize> = match split {
            None => vec![1; dim],
            Some(s) => {
                let v = s.to_i64_vec()?;
                if v.iter().any(|&x| x < 0) {
                    return Err(OpError::input(1, "split lengths must not be negative"));
                }
                if s.rank() == 0 {
                    let chunk = v[0] as usize;
                    if chunk == 0 {
                        return Err(OpError::input(1, "split must be positive"));
                    }
                    (0..dim)
                        .step_by(chunk)
                        .map(|start| chunk.min(dim - start))
                        .collect()
                } else {
                    if v.iter().sum::<i64>() != dim as i64 {
                        return Err(OpError::input(
                            1,
                            format!("split lengths {v:?} do not add up to {dim}"),
                        ));
                    }
                    v.iter().map(|&x| x as usize).collect()
                }
            }
        };
        let squeeze = split.is_none() && !self.keepdims;
        let mut items = Vec::with_capacity(lengths.len());
        let mut start = 0;
        for len in lengths {
            let part = if squeeze {
                index_along(t, axis, start)?
            } else {
                narrow(t, axis, start, len)?
            };
            items.push(Value::Tensor(part));
            start += len;
        }
        Ok(vec![Value::Sequence {
            elem_type: tensor_type(t.dtype()),
            items,
        }])
    }
}

struct ConcatFromSequence {
    axis: i64,
    new_axis: bool,
}

fn build_concat(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ConcatFromSequence {
        axis: info
            .attr_int_opt("axis")?
            .ok_or_else(|| OpError::attribute("axis", "is required"))?,
        new_axis: info.attr_int("new_axis", 0)? != 0,
    }))
}

impl Kernel for ConcatFromSequence {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (_, items) = items_of(inputs.value(0)?, 0)?;
        let tensors: Vec<&Tensor> = items
            .iter()
            .map(|v| {
                v.as_tensor()
                    .ok_or_else(|| OpError::input(0, "sequence elements must be tensors"))
            })
            .collect::<Result<_, _>>()?;
        let first = tensors
            .first()
            .ok_or_else(|| OpError::input(0, "cannot concatenate an empty sequence"))?;
        let rank = first.rank() + usize::from(self.new_axis);
        let axis = normalize_axis(self.axis, rank)?;
        let parts: Vec<Tensor> = if self.new_axis {
            tensors
                .iter()
                .map(|t| {
                    let mut shape = t.shape().to_vec();
                    shape.insert(axis, 1);
                    t.reshape(shape).map_err(OpError::from)
                })
                .collect::<Result<_, _>>()?
        } else {
            tensors.iter().map(|t| (*t).clone()).collect()
        };
        Ok(vec![Value::Tensor(concat(&parts, axis)?)])
    }
}

/// SequenceMap (opset 17): applies `body` to each element (of every sequence input in
/// lockstep; tensor inputs are passed whole to every call), producing one sequence per output.
struct SequenceMap {
    body: Arc<dyn Subgraph>,
    positions: Vec<usize>,
    declared: usize,
}

fn build_map(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let body = info.subgraphs.compile(info.attr_graph("body")?)?;
    let implicit = implicit_input_names(std::slice::from_ref(&body));
    Ok(Box::new(SequenceMap {
        positions: captured_positions(&implicit, body.as_ref()),
        body,
        declared: info.num_inputs(),
    }))
}

impl Kernel for SequenceMap {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let mut values = inputs.into_values();
        let implicit: Vec<Value> = values
            .split_off(self.declared.min(values.len()))
            .into_iter()
            .flatten()
            .collect();
        let captured: Vec<Value> = self
            .positions
            .iter()
            .map(|&p| implicit[p].clone())
            .collect();
        let values: Vec<Value> = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| OpError::input(i, "is required but missing")))
            .collect::<Result<_, _>>()?;
        let (_, first) = items_of(&values[0], 0)?;
        let len = first.len();
        let mut outputs: Vec<Vec<Value>> = Vec::new();
        for i in 0..len {
            let args = values
                .iter()
                .enumerate()
                .map(|(k, v)| match v {
                    Value::Sequence { items, .. } => items.get(i).cloned().ok_or_else(|| {
                        OpError::input(
                            k,
                            format!("has {} elements, the first sequence {len}", items.len()),
                        )
                    }),
                    other => Ok(other.clone()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let outs = self.body.run(args, &captured)?;
            if outputs.is_empty() {
                outputs = vec![Vec::with_capacity(len); outs.len()];
            }
            for (k, v) in outs.into_iter().enumerate() {
                outputs[k].push(v);
            }
        }
        if outputs.is_empty() {
            return Err(OpError::unsupported(
                "SequenceMap over empty sequences (the output element types are unknown)",
            ));
        }
        Ok(outputs
            .into_iter()
            .map(|items| {
                let elem_type = match items.first() {
                    Some(Value::Tensor(t)) => tensor_type(t.dtype()),
                    _ => ValueType::Unknown,
                };
                Value::Sequence { elem_type, items }
            })
            .collect())
    }
}

struct Optional(ValueType);

fn build_optional(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let ty = match info.attr_value("type") {
        Some(runnx_ir::AttributeValue::Type(t)) => t.clone(),
        Some(other) => {
            return Err(OpError::attribute(
                "type",
                format!("expected type_proto, got {}", other.kind()),
            ))
        }
        None => ValueType::Unknown,
    };
    Ok(Box::new(Optional(ty)))
}

impl Kernel for Optional {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let value = inputs.take_value(0);
        let elem_type = match (&self.0, &value) {
            (ValueType::Unknown, Some(Value::Tensor(t))) => tensor_type(t.dtype()),
            (ty, _) => ty.clone(),
        };
        Ok(vec![Value::Optional {
            elem_type,
            value: value.map(Box::new),
        }])
    }
}

struct HasElement;

impl Kernel for HasElement {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let has = match inputs.opt_value(0) {
            None | Some(Value::Optional { value: None, .. }) => false,
            Some(_) => true,
        };
        Ok(vec![Value::Tensor(Tensor::scalar(has))])
    }
}

struct GetElement;

impl Kernel for GetElement {
    fn run(&self, mut inputs: Inputs) -> Result<Vec<Value>, OpError> {
        match inputs.take_value(0) {
            Some(Value::Optional { value: Some(v), .. }) => Ok(vec![*v]),
            Some(Value::Optional { value: None, .. }) | None => Err(OpError::input(
                0,
                "the optional is empty (check it with OptionalHasElement first)",
            )),
            Some(other) => Ok(vec![other]),
        }
    }
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(OpError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )))
    }
}

/// `len` entries from `start` along `axis`.
fn narrow(t: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor, OpError> {
    let shape = t.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut indices = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * shape[axis] + start) * inner;
        indices.extend(base..base + len * inner);
    }
    let mut out_shape = shape.to_vec();
    out_shape[axis] = len;
    Ok(Tensor::new(out_shape, t.data().gather(&indices))?)
}

/// Concatenates tensors along `axis` (all other dims equal).
fn concat(parts: &[Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = &parts[0];
    for p in parts {
        let same = p.rank() == first.rank()
            && p.dtype() == first.dtype()
            && p.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !same {
            return Err(OpError::invalid(format!(
                "cannot concatenate {}{:?} with {}{:?} along axis {axis}",
                first.dtype(),
                first.shape(),
                p.dtype(),
                p.shape()
            )));
        }
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let mut pieces: Vec<TensorData> = Vec::with_capacity(outer * parts.len());
    for o in 0..outer {
        for p in parts {
            let block: usize = p.shape()[axis..].iter().product();
            let indices: Vec<usize> = (o * block..(o + 1) * block).collect();
            pieces.push(p.data().gather(&indices));
        }
    }
    let refs: Vec<&TensorData> = pieces.iter().collect();
    let data = TensorData::concat(&refs).unwrap_or_else(|| TensorData::zeros(first.dtype(), 0));
    let mut shape = first.shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    Ok(Tensor::new(shape, data)?)
}
