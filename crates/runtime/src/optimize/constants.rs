//! Constants the fusion passes look for in a graph: initializers no feed can replace, and
//! Constant nodes' values, seen through Identity nodes.

use runnx_ir::{AttributeValue, Graph, Tensor, TensorData};

use super::is_onnx_op;

/// The name of a constant float vector of `len` values that `name` holds (see
/// [`constant_tensor`]).
pub(crate) fn constant_vector(graph: &Graph, name: &str, len: usize) -> Option<String> {
    let (name, tensor) = constant_tensor(graph, name)?;
    let is_float = matches!(tensor.data(), TensorData::Float(_));
    (is_float && tensor.shape() == [len]).then_some(name)
}

/// The constant `name` holds: an initializer no feed can replace, or a Constant node's
/// output, seen through Identity nodes. Returns the constant's own name (so the Identity can
/// go) and its value.
pub(crate) fn constant_tensor<'g>(graph: &'g Graph, name: &str) -> Option<(String, &'g Tensor)> {
    if graph.inputs.iter().any(|i| i.name == name) {
        return None;
    }
    if let Some(t) = graph.initializer(name) {
        return Some((name.to_string(), t));
    }
    let node = graph
        .nodes
        .iter()
        .find(|n| n.outputs.first().map(String::as_str) == Some(name))?;
    if is_onnx_op(node, "Identity") {
        return constant_tensor(graph, node.inputs.first()?);
    }
    if !is_onnx_op(node, "Constant") {
        return None;
    }
    match &node.attribute("value")?.value {
        AttributeValue::Tensor(t) => Some((name.to_string(), t)),
        _ => None,
    }
}

/// The value of a constant float scalar (rank 0, or one element of rank 1, so that the Where
/// keeps the softmax's shape).
pub(crate) fn scalar_f32(graph: &Graph, name: &str) -> Option<f32> {
    let (_, tensor) = constant_tensor(graph, name)?;
    match (tensor.data(), tensor.shape()) {
        (TensorData::Float(v), [] | [1]) => v.first().copied(),
        _ => None,
    }
}
