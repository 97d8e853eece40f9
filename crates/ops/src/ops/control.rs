//! Control flow: If, Loop, Scan. Their bodies are subgraphs compiled by the runtime when the
//! node is built; values the bodies read from enclosing graphs arrive as implicit inputs after
//! the declared ones (see `implicit_input_names`).

use std::sync::Arc;

use runnx_ir::{strides_of, DataType, Tensor, TensorData, Value};

use crate::context::{captured_positions, implicit_input_names};
use crate::{Inputs, Kernel, NodeInfo, OpError, Registry, Subgraph};

pub(crate) fn register(reg: &mut Registry) {
    reg.add_versions("", "If", &[1, 11, 13, 16, 19, 21, 23, 24, 25], build_if);
    reg.add_versions("", "Loop", &[1, 11, 13, 16, 19, 21, 23, 24, 25], build_loop);
    reg.add("", "Scan", 8, build_scan);
    reg.add_versions("", "Scan", &[9, 11, 16, 19, 21, 23, 24, 25], build_scan);
}

/// A compiled body plus where its captured values sit among the node's implicit inputs.
struct Body {
    graph: Arc<dyn Subgraph>,
    positions: Vec<usize>,
}

impl Body {
    fn run(&self, inputs: Vec<Value>, implicit: &[Value]) -> Result<Vec<Value>, OpError> {
        let captured: Vec<Value> = self
            .positions
            .iter()
            .map(|&p| implicit[p].clone())
            .collect();
        self.graph.run(inputs, &captured)
    }
}

/// Compiles the named graph attributes and maps each one's captured values.
fn compile_bodies(info: &NodeInfo, names: &[&str]) -> Result<Vec<Body>, OpError> {
    let graphs = names
        .iter()
        .map(|n| info.subgraphs.compile(info.attr_graph(n)?))
        .collect::<Result<Vec<_>, _>>()?;
    let implicit = implicit_input_names(&graphs);
    Ok(graphs
        .into_iter()
        .map(|graph| Body {
            positions: captured_positions(&implicit, graph.as_ref()),
            graph,
        })
        .collect())
}

/// Splits a node's values into declared inputs and implicit (captured) ones.
fn split_implicit(inputs: Inputs, declared: usize) -> (Vec<Option<Value>>, Vec<Value>) {
    let mut values = inputs.into_values();
    let implicit = if values.len() > declared {
        values.split_off(declared).into_iter().flatten().collect()
    } else {
        Vec::new()
    };
    (values, implicit)
}

fn scalar_bool(v: &Value, what: &str) -> Result<bool, OpError> {
    let t = v.as_tensor().ok_or_else(|| {
        OpError::invalid(format!("{what} must be a tensor, got {}", v.describe()))
    })?;
    match t.data() {
        TensorData::Bool(b) if b.len() == 1 => Ok(b[0]),
        _ => Err(OpError::invalid(format!(
            "{what} must be a single bool, got {}{:?}",
            t.dtype(),
            t.shape()
        ))),
    }
}

/// If (opsets 1-25): runs `then_branch` or `else_branch` on the value of `cond`.
struct If {
    then_branch: Body,
    else_branch: Body,
    declared: usize,
}

fn build_if(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let mut bodies = compile_bodies(info, &["then_branch", "else_branch"])?.into_iter();
    Ok(Box::new(If {
        then_branch: bodies.next().expect("two bodies"),
        else_branch: bodies.next().expect("two bodies"),
        declared: info.num_inputs(),
    }))
}

impl Kernel for If {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let cond = scalar_bool(inputs.value(0)?, "cond")?;
        let (_, implicit) = split_implicit(inputs, self.declared);
        let branch = if cond {
            &self.then_branch
        } else {
            &self.else_branch
        };
        branch.run(Vec::new(), &implicit)
    }
}

/// Loop (opsets 1-25): `for (i = 0; i < M && cond; i++)`, carrying N values and stacking K
/// scan outputs along a new leading axis.
struct Loop {
    body: Body,
    declared: usize,
}

fn build_loop(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    if info.num_inputs() < 2 {
        return Err(OpError::invalid(
            "Loop needs at least the inputs M and cond (either may be empty)",
        ));
    }
    let body = compile_bodies(info, &["body"])?.pop().expect("one body");
    Ok(Box::new(Loop {
        body,
        declared: info.num_inputs(),
    }))
}

impl Kernel for Loop {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let max_trips = match inputs.opt_tensor(0)? {
            Some(t) => Some(
                *t.to_i64_vec()?
                    .first()
                    .ok_or_else(|| OpError::input(0, "M is empty"))?,
            ),
            None => None,
        };
        let mut cond = match inputs.opt_value(1) {
            Some(v) => Some(scalar_bool(v, "cond")?),
            None => None,
        };
        if max_trips.is_none() && cond.is_none() {
            return Err(OpError::invalid(
                "Loop has neither a trip count M nor a condition: it would never end",
            ));
        }
        let (declared, implicit) = split_implicit(inputs, self.declared);
        let mut carried: Vec<Value> = declared
            .into_iter()
            .skip(2)
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| OpError::input(i + 2, "loop-carried initial value is missing"))
            })
            .collect::<Result<_, _>>()?;
        let n = carried.len();
        let mut scans: Vec<Vec<Tensor>> = Vec::new();
        let mut trip: i64 = 0;
        while max_trips.is_none_or(|m| trip < m) && cond.unwrap_or(true) {
            let mut body_inputs = Vec::with_capacity(n + 2);
            body_inputs.push(Value::Tensor(Tensor::scalar(trip)));
            body_inputs.push(Value::Tensor(Tensor::scalar(cond.unwrap_or(true))));
            body_inputs.append(&mut carried);
            let mut outs = self.body.run(body_inputs, &implicit)?.into_iter();
            let next_cond = outs
                .next()
                .ok_or_else(|| OpError::invalid("Loop body returned no condition"))?;
            if cond.is_some() {
                cond = Some(scalar_bool(&next_cond, "the body's condition output")?);
            }
            carried = outs.by_ref().take(n).collect();
            if carried.len() != n {
                return Err(OpError::invalid(
                    "Loop body returned fewer loop-carried values than it takes",
                ));
            }
            let rest: Vec<Value> = outs.collect();
            if scans.is_empty() {
                scans = vec![Vec::new(); rest.len()];
            }
            for (k, v) in rest.into_iter().enumerate() {
                let t = v
                    .into_tensor()
                    .ok_or_else(|| OpError::invalid("Loop scan outputs must be tensors"))?;
                scans
                    .get_mut(k)
                    .ok_or_else(|| OpError::invalid("Loop body output count changed"))?
                    .push(t);
            }
            trip += 1;
        }
        let mut outputs = carried;
        for items in scans {
            outputs.push(Value::Tensor(stack(&items)?));
        }
        Ok(outputs)
    }
}

/// Scan (opset 8 with a leading batch axis and optional sequence_lens; 9-25 without).
struct Scan {
    body: Body,
    declared: usize,
    num_scan_inputs: usize,
    input_axes: Vec<i64>,
    input_reverse: Vec<bool>,
    output_axes: Vec<i64>,
    output_reverse: Vec<bool>,
    /// Opset 8: every input has a batch axis 0 and the first input is `sequence_lens`.
    batched: bool,
}

fn build_scan(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let num_scan_inputs = info
        .attr_int_opt("num_scan_inputs")?
        .ok_or_else(|| OpError::attribute("num_scan_inputs", "is required"))?;
    let num_scan_inputs = usize::try_from(num_scan_inputs)
        .map_err(|_| OpError::attribute("num_scan_inputs", "must be positive"))?;
    let batched = info.opset < 9;
    let body = compile_bodies(info, &["body"])?.pop().expect("one body");
    let directions = |name: &str| -> Result<Vec<bool>, OpError> {
        Ok(info
            .attr_ints_opt(name)?
            .unwrap_or_default()
            .iter()
            .map(|&d| d == 1)
            .collect())
    };
    let (input_reverse, output_reverse) = if batched {
        (directions("directions")?, Vec::new())
    } else {
        (
            directions("scan_input_directions")?,
            directions("scan_output_directions")?,
        )
    };
    Ok(Box::new(Scan {
        body,
        declared: info.num_inputs(),
        num_scan_inputs,
        input_axes: info.attr_ints_opt("scan_input_axes")?.unwrap_or_default(),
        input_reverse,
        output_axes: info.attr_ints_opt("scan_output_axes")?.unwrap_or_default(),
        output_reverse,
        batched,
    }))
}

impl Scan {
    /// One scan over unbatched states and inputs; returns final states then scan outputs.
    fn scan(
        &self,
        states: Vec<Value>,
        scan_inputs: &[Tensor],
        implicit: &[Value],
    ) -> Result<Vec<Value>, OpError> {
        let mut axes = Vec::with_capacity(scan_inputs.len());
        let mut length = None;
        for (j, t) in scan_inputs.iter().enumerate() {
            let axis = normalize_axis(self.input_axes.get(j).copied().unwrap_or(0), t.rank())?;
            let len = t.shape()[axis];
            if *length.get_or_insert(len) != len {
                return Err(OpError::invalid(
                    "scan inputs have different lengths along their scan axes",
                ));
            }
            axes.push(axis);
        }
        let length = length.unwrap_or(0);
        let n = states.len();
        let mut states = states;
        let mut scans: Vec<Vec<Tensor>> = Vec::new();
        for step in 0..length {
            let mut body_inputs = std::mem::take(&mut states);
            for (j, t) in scan_inputs.iter().enumerate() {
                let index = if self.input_reverse.get(j).copied().unwrap_or(false) {
                    length - 1 - step
                } else {
                    step
                };
                body_inputs.push(Value::Tensor(index_along(t, axes[j], index)?));
            }
            let mut outs = self.body.run(body_inputs, implicit)?.into_iter();
            states = outs.by_ref().take(n).collect();
            if states.len() != n {
                return Err(OpError::invalid(
                    "Scan body returned fewer state values than it takes",
                ));
            }
            let rest: Vec<Value> = outs.collect();
            if scans.is_empty() {
                scans = vec![Vec::new(); rest.len()];
            }
            for (k, v) in rest.into_iter().enumerate() {
                let t = v
                    .into_tensor()
                    .ok_or_else(|| OpError::invalid("Scan outputs must be tensors"))?;
                scans
                    .get_mut(k)
                    .ok_or_else(|| OpError::invalid("Scan body output count changed"))?
                    .push(t);
            }
        }
        let mut outputs = states;
        for (k, mut items) in scans.into_iter().enumerate() {
            if self.output_reverse.get(k).copied().unwrap_or(false) {
                items.reverse();
            }
            let stacked = stack(&items)?;
            let axis = normalize_axis(
                self.output_axes.get(k).copied().unwrap_or(0),
                stacked.rank(),
            )?;
            outputs.push(Value::Tensor(move_leading_axis(&stacked, axis)?));
        }
        Ok(outputs)
    }
}

impl Kernel for Scan {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let (declared, implicit) = split_implicit(inputs, self.declared);
        let skip = usize::from(self.batched); // opset 8: sequence_lens first
        if self.batched {
            if let Some(Some(Value::Tensor(lens))) = declared.first() {
                let lens = lens.to_i64_vec()?;
                let max = lens.iter().copied().max().unwrap_or(0);
                if lens.iter().any(|&l| l != max) {
                    return Err(OpError::unsupported(
                        "Scan-8 with sequence_lens that differ across the batch",
                    ));
                }
            }
        }
        let values: Vec<Value> = declared
            .into_iter()
            .skip(skip)
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| OpError::input(i + skip, "is required but missing")))
            .collect::<Result<_, _>>()?;
        if values.len() < self.num_scan_inputs {
            return Err(OpError::invalid("fewer inputs than num_scan_inputs"));
        }
        let split = values.len() - self.num_scan_inputs;
        let scan_inputs: Vec<Tensor> = values[split..]
            .iter()
            .map(|v| {
                v.as_tensor()
                    .cloned()
                    .ok_or_else(|| OpError::invalid("scan inputs must be tensors"))
            })
            .collect::<Result<_, _>>()?;
        let states: Vec<Value> = values[..split].to_vec();
        if !self.batched {
            return self.scan(states, &scan_inputs, &implicit);
        }
        // Opset 8: run each batch entry separately (scan axis 1 becomes 0), then restack.
        let batch = scan_inputs
            .first()
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .unwrap_or(0);
        let mut per_batch: Vec<Vec<Value>> = Vec::with_capacity(batch);
        for b in 0..batch {
            let states_b = states
                .iter()
                .map(|v| Ok(Value::Tensor(index_along(as_tensor(v)?, 0, b)?)))
                .collect::<Result<Vec<_>, OpError>>()?;
            let inputs_b = scan_inputs
                .iter()
                .map(|t| index_along(t, 0, b))
                .collect::<Result<Vec<_>, _>>()?;
            per_batch.push(self.scan(states_b, &inputs_b, &implicit)?);
        }
        let outputs = per_batch.first().map_or(0, Vec::len);
        (0..outputs)
            .map(|k| {
                let items = per_batch
                    .iter()
                    .map(|outs| as_tensor(&outs[k]).cloned())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::Tensor(stack(&items)?))
            })
            .collect()
    }
}

fn as_tensor(v: &Value) -> Result<&Tensor, OpError> {
    v.as_tensor()
        .ok_or_else(|| OpError::invalid(format!("expected a tensor, got {}", v.describe())))
}

fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r.max(1)).contains(&a) {
        Ok(a as usize)
    } else {
        Err(OpError::invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )))
    }
}

/// Stacks equally shaped tensors along a new leading axis.
pub(crate) fn stack(items: &[Tensor]) -> Result<Tensor, OpError> {
    let Some(first) = items.first() else {
        // Nothing to stack: an empty float tensor (the body's output type is not known here).
        return Ok(Tensor::zeros(DataType::Float, [0]));
    };
    if let Some(bad) = items
        .iter()
        .find(|t| t.shape() != first.shape() || t.dtype() != first.dtype())
    {
        return Err(OpError::invalid(format!(
            "iterations produced different outputs: {}{:?} and {}{:?}",
            first.dtype(),
            first.shape(),
            bad.dtype(),
            bad.shape()
        )));
    }
    let parts: Vec<&TensorData> = items.iter().map(Tensor::data).collect();
    let data = TensorData::concat(&parts).expect("same element type");
    let mut shape = vec![items.len()];
    shape.extend_from_slice(first.shape());
    Ok(Tensor::new(shape, data)?)
}

/// The slice at `index` along `axis`, with that axis removed.
pub(crate) fn index_along(t: &Tensor, axis: usize, index: usize) -> Result<Tensor, OpError> {
    let shape = t.shape();
    if axis >= shape.len() || index >= shape[axis] {
        return Err(OpError::invalid(format!(
            "index {index} along axis {axis} is outside {shape:?}"
        )));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut indices = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let base = (o * shape[axis] + index) * inner;
        indices.extend(base..base + inner);
    }
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis);
    Ok(Tensor::new(out_shape, t.data().gather(&indices))?)
}

/// Moves axis 0 to position `axis` (the other axes keep their order).
fn move_leading_axis(t: &Tensor, axis: usize) -> Result<Tensor, OpError> {
    if axis == 0 {
        return Ok(t.clone());
    }
    let shape = t.shape();
    let mut perm: Vec<usize> = (1..shape.len()).collect();
    perm.insert(axis, 0);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_strides = strides_of(shape);
    let out_strides = strides_of(&out_shape);
    let len = t.len();
    let indices: Vec<usize> = (0..len)
        .map(|flat| {
            perm.iter()
                .enumerate()
                .map(|(d, &p)| (flat / out_strides[d]) % out_shape[d] * in_strides[p])
                .sum()
        })
        .collect();
    Ok(Tensor::new(out_shape, t.data().gather(&indices))?)
}
