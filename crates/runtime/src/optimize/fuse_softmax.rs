//! `Where(IsNaN(s), value, s)` for `s = Softmax(x)` (opset 13 and later), how exported
//! attention turns the 0/0 of a fully masked row into zeros, becomes one
//! `ai.runnx.SoftmaxNanTo`: the replacement happens while each row is in cache, instead of
//! two more passes and a mask tensor.
//!
//! runnx-only, like [`super::fuse_pool`]: applied by the session after any optimized model is
//! saved.

use std::collections::HashMap;

use runnx_ir::{Attribute, AttributeValue, Graph, Node};
use runnx_ops::RUNNX_DOMAIN;

use super::constants::scalar_f32;
use super::{apply_rewrites, is_onnx_op, producers, use_counts};

/// Fuses every eligible Softmax/IsNaN/Where triple of a graph importing `opset`; returns how
/// many.
pub(super) fn fuse(graph: &mut Graph, opset: i64) -> usize {
    if opset < 13 {
        return 0;
    }
    let counts = use_counts(graph);
    let producer = producers(graph);
    let node_of = |name: &str, op: &str| {
        let at = *producer.get(name)?;
        is_onnx_op(&graph.nodes[at], op).then_some(at)
    };
    let mut replace = HashMap::new();
    let mut remove = vec![false; graph.nodes.len()];
    for (at, select) in graph.nodes.iter().enumerate() {
        if !is_onnx_op(select, "Where") || select.inputs.len() != 3 {
            continue;
        }
        let [condition, value, probabilities] = [0, 1, 2].map(|i| select.inputs[i].as_str());
        let Some(is_nan) = node_of(condition, "IsNaN") else {
            continue;
        };
        let Some(softmax) = node_of(probabilities, "Softmax") else {
            continue;
        };
        let fits = graph.nodes[is_nan].inputs.first().map(String::as_str) == Some(probabilities)
            && counts.get(condition) == Some(&1)
            && counts.get(probabilities) == Some(&2)
            && graph.nodes[softmax].outputs.len() == 1;
        let Some(value) = fits.then(|| scalar_f32(graph, value)).flatten() else {
            continue;
        };
        let node = &graph.nodes[softmax];
        let mut attributes: Vec<Attribute> = node
            .attributes
            .iter()
            .filter(|a| a.name == "axis")
            .cloned()
            .collect();
        attributes.push(Attribute {
            name: "value".into(),
            value: AttributeValue::Float(value),
            ref_attr_name: None,
        });
        let fused = Node {
            name: node.name.clone(),
            op_type: "SoftmaxNanTo".into(),
            domain: RUNNX_DOMAIN.into(),
            inputs: node.inputs.clone(),
            outputs: select.outputs.clone(),
            attributes,
            ..Node::default()
        };
        replace.insert(at, fused);
        remove[softmax] = true;
        remove[is_nan] = true;
    }
    apply_rewrites(graph, replace, &remove)
}

#[cfg(test)]
mod tests {
    use runnx_ir::{Dim, Model, Tensor};

    use super::super::testing::{assert_optimized_matches, attr, float_info, model_of, node};
    use super::*;

    /// Softmax over axis 1 of x [n, 4, 3], NaN results replaced by 0.5; then the same pattern
    /// with a Softmax output that is also a graph output (left alone).
    fn model() -> Model {
        let dims = vec![Dim::Symbol("n".into()), Dim::Fixed(4), Dim::Fixed(3)];
        model_of(Graph {
            inputs: vec![float_info("x", Some(dims))],
            outputs: ["y", "z", "s2"].map(|name| float_info(name, None)).to_vec(),
            initializers: vec![("half".into(), Tensor::from_vec([], vec![0.5f32]).unwrap())],
            nodes: vec![
                Node {
                    attributes: vec![attr("axis", AttributeValue::Int(1))],
                    ..node("Softmax", &["x"], "s")
                },
                node("IsNaN", &["s"], "nan"),
                node("Where", &["nan", "half", "s"], "y"),
                node("Softmax", &["x"], "s2"),
                node("IsNaN", &["s2"], "nan2"),
                node("Where", &["nan2", "half", "s2"], "z"),
            ],
            ..Graph::default()
        })
    }

    #[test]
    fn nan_guard_goes_into_the_softmax() {
        let mut fused = model();
        assert_eq!(fuse(&mut fused.graph, 17), 1);
        let ops: Vec<_> = fused.graph.nodes.iter().map(|n| &n.op_type[..]).collect();
        assert_eq!(ops, ["SoftmaxNanTo", "Softmax", "IsNaN", "Where"]);
        assert_eq!(fused.graph.nodes[0].outputs, ["y"]);
        assert_eq!(fuse(&mut model().graph, 12), 0);
    }

    #[test]
    fn fused_outputs_match_the_unfused_graph() {
        // Columns of -inf (softmax 0/0), a NaN, and ordinary values.
        let mut values: Vec<f32> = (0..24).map(|i| (i % 7) as f32 * 0.3 - 1.0).collect();
        for i in [0, 3, 6, 9] {
            values[i] = f32::NEG_INFINITY;
        }
        values[13] = f32::NAN;
        let x = Tensor::from_vec([2, 4, 3], values).unwrap();
        let fused = assert_optimized_matches(model, &x, 1e-6);
        // The first column of the first item is all -inf: 0/0, replaced.
        assert_eq!(fused[0].as_slice::<f32>().unwrap()[0], 0.5);
    }
}
