//! Conv followed by an inference-mode BatchNormalization becomes one Conv with rescaled filters
//! and a new bias: `s = scale / sqrt(var + eps)`, `W' = W·s` per output channel,
//! `B' = (B - mean)·s + bias`. Saves a full pass over every conv output of a CNN.

use std::collections::HashSet;

use runnx_ir::{AttributeValue, DataType, Graph, Node, Tensor};

use super::{fresh_name, is_onnx_op, producers, use_counts};

/// Folds every eligible Conv → BatchNormalization pair; returns how many.
pub(super) fn fold_batch_norms(graph: &mut Graph, opset: i64) -> usize {
    let mut folded = 0;
    // BatchNormalizations found unfoldable (parameters not constant, odd shapes), by output.
    let mut skipped: HashSet<String> = HashSet::new();
    loop {
        let counts = use_counts(graph);
        let producer = producers(graph);
        let candidate = graph.nodes.iter().enumerate().find_map(|(bn_index, bn)| {
            if !is_inference_batch_norm(bn, opset) || skipped.contains(&bn.outputs[0]) {
                return None;
            }
            let conv_index = *producer.get(&bn.inputs[0])?;
            let conv = &graph.nodes[conv_index];
            (is_onnx_op(conv, "Conv")
                && conv.outputs.len() == 1
                && counts.get(&conv.outputs[0]) == Some(&1))
            .then_some((conv_index, bn_index))
        });
        let Some((conv_index, bn_index)) = candidate else {
            return folded;
        };
        match folded_weights(graph, &graph.nodes[conv_index], &graph.nodes[bn_index]) {
            Some((w, b)) => {
                let conv_out = graph.nodes[conv_index].outputs[0].clone();
                let w_name = fresh_name(graph, &format!("{conv_out}_folded_W"));
                graph.initializers.push((w_name.clone(), w));
                let b_name = fresh_name(graph, &format!("{conv_out}_folded_B"));
                graph.initializers.push((b_name.clone(), b));
                let bn = graph.nodes.remove(bn_index);
                let conv_index = if bn_index < conv_index {
                    conv_index - 1
                } else {
                    conv_index
                };
                let conv = &mut graph.nodes[conv_index];
                conv.inputs.truncate(1);
                conv.inputs.push(w_name);
                conv.inputs.push(b_name);
                conv.outputs = vec![bn.outputs[0].clone()];
                folded += 1;
            }
            None => {
                skipped.insert(graph.nodes[bn_index].outputs[0].clone());
            }
        }
    }
}

/// BatchNormalization computing `Y` from the running statistics (not training).
fn is_inference_batch_norm(node: &Node, opset: i64) -> bool {
    if !is_onnx_op(node, "BatchNormalization") || node.inputs.len() != 5 {
        return false;
    }
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return false;
    }
    let int_attr = |name: &str, default: i64| match node.attribute(name).map(|a| &a.value) {
        Some(AttributeValue::Int(v)) => Some(*v),
        None => Some(default),
        Some(_) => None,
    };
    // Opsets 1-6 say "test mode" with is_test; 1-8 allow per-activation statistics (spatial=0).
    let is_test = opset >= 7 || int_attr("is_test", 0) == Some(1);
    is_test && int_attr("spatial", 1) == Some(1) && int_attr("training_mode", 0) == Some(0)
}

/// The folded filter and bias, when every parameter is a constant of one float type and the
/// shapes agree.
fn folded_weights(graph: &Graph, conv: &Node, bn: &Node) -> Option<(Tensor, Tensor)> {
    let w = graph.initializer(conv.inputs.get(1)?)?;
    let channels = *w.shape().first()?;
    let params: Vec<Vec<f64>> = bn.inputs[1..5]
        .iter()
        .map(|name| values(graph.initializer(name)?, w.dtype(), channels))
        .collect::<Option<_>>()?;
    let conv_bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
        Some(name) => values(graph.initializer(name)?, w.dtype(), channels)?,
        None => vec![0.0; channels],
    };
    let epsilon = match bn.attribute("epsilon").map(|a| &a.value) {
        Some(AttributeValue::Float(e)) => f64::from(*e),
        None => 1e-5,
        Some(_) => return None,
    };
    let (scale, shift, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let factor: Vec<f64> = (0..channels)
        .map(|c| scale[c] / (var[c] + epsilon).sqrt())
        .collect();
    let bias: Vec<f64> = (0..channels)
        .map(|c| (conv_bias[c] - mean[c]) * factor[c] + shift[c])
        .collect();
    let per_channel = w.len().checked_div(channels)?;
    let rescale = |v: f64, i: usize| v * factor[i / per_channel];
    match w.dtype() {
        DataType::Float => {
            let w_new: Vec<f32> = w
                .as_slice::<f32>()
                .ok()?
                .iter()
                .enumerate()
                .map(|(i, &v)| rescale(f64::from(v), i) as f32)
                .collect();
            let b_new: Vec<f32> = bias.iter().map(|&v| v as f32).collect();
            Some((
                Tensor::from_vec(w.shape(), w_new).ok()?,
                Tensor::from_vec([channels], b_new).ok()?,
            ))
        }
        DataType::Double => {
            let w_new: Vec<f64> = w
                .as_slice::<f64>()
                .ok()?
                .iter()
                .enumerate()
                .map(|(i, &v)| rescale(v, i))
                .collect();
            Some((
                Tensor::from_vec(w.shape(), w_new).ok()?,
                Tensor::from_vec([channels], bias).ok()?,
            ))
        }
        _ => None,
    }
}

/// A 1-D parameter of `len` values of type `dtype`, widened to f64.
fn values(t: &Tensor, dtype: DataType, len: usize) -> Option<Vec<f64>> {
    if t.dtype() != dtype || t.len() != len || t.rank() != 1 {
        return None;
    }
    match dtype {
        DataType::Float => Some(
            t.as_slice::<f32>()
                .ok()?
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
        ),
        DataType::Double => Some(t.as_slice::<f64>().ok()?.to_vec()),
        _ => None,
    }
}
