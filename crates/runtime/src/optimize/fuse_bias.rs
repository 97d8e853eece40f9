//! A MatMul by a constant matrix whose only reader is an Add of a constant vector along the
//! product's last axis (a linear layer's bias, as exporters write it) becomes
//! `ai.runnx.MatMulBias`: the GEMM adds the bias to each tile while it is in cache, instead of
//! a pass of its own over the product (BERT's query, key and value projections).
//!
//! runnx-only, like [`super::fuse_pool`]: applied by the session after any optimized model is
//! saved.

use std::collections::HashMap;

use runnx_ir::{DataType, Graph, Node};
use runnx_ops::RUNNX_DOMAIN;

use super::constants::constant_vector;
use super::{apply_rewrites, is_onnx_op, producers, use_counts};

/// Fuses every eligible MatMul/Add pair; returns how many.
pub(super) fn fuse(graph: &mut Graph) -> usize {
    let counts = use_counts(graph);
    let producer = producers(graph);
    let mut replace = HashMap::new();
    let mut remove = vec![false; graph.nodes.len()];
    for (at, add) in graph.nodes.iter().enumerate() {
        // Opset 1-6 Adds broadcast only through attributes: leave those alone.
        if !is_onnx_op(add, "Add") || add.inputs.len() != 2 || !add.attributes.is_empty() {
            continue;
        }
        let fused = (0..2).find_map(|side| {
            let product = &add.inputs[side];
            if counts.get(product) != Some(&1) {
                return None;
            }
            let matmul_at = *producer.get(product)?;
            let matmul = &graph.nodes[matmul_at];
            let columns = constant_matrix_columns(graph, matmul)?;
            let bias = constant_vector(graph, &add.inputs[1 - side], columns)?;
            let node = Node {
                name: matmul.name.clone(),
                op_type: "MatMulBias".into(),
                domain: RUNNX_DOMAIN.into(),
                inputs: vec![matmul.inputs[0].clone(), matmul.inputs[1].clone(), bias],
                outputs: add.outputs.clone(),
                ..Node::default()
            };
            Some((matmul_at, node))
        });
        // At the Add's place, where the bias (maybe a Constant node's output) exists too.
        if let Some((matmul_at, node)) = fused {
            replace.insert(at, node);
            remove[matmul_at] = true;
        }
    }
    apply_rewrites(graph, replace, &remove)
}

/// B's column count when `node` is a MatMul by a constant 2-D f32 matrix (an initializer no
/// feed can replace).
fn constant_matrix_columns(graph: &Graph, node: &Node) -> Option<usize> {
    if !is_onnx_op(node, "MatMul") || node.inputs.len() != 2 || node.outputs.len() != 1 {
        return None;
    }
    let name = &node.inputs[1];
    if graph.inputs.iter().any(|i| &i.name == name) {
        return None;
    }
    match graph.initializer(name)? {
        w if w.dtype() == DataType::Float => match *w.shape() {
            [_, columns] => Some(columns),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use runnx_ir::{Dim, Model, Tensor};

    use super::super::testing::{assert_optimized_matches, float_info, model_of, node, values};
    use super::*;

    /// x [n, 5, 6] through three linear layers: bias after the product, bias first through an
    /// Identity, and a product that is also a graph output (its Add stays).
    fn model() -> Model {
        let tensor = |shape: &[usize], seed| {
            Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
        };
        let x_dims = vec![Dim::Symbol("n".into()), Dim::Fixed(5), Dim::Fixed(6)];
        model_of(Graph {
            inputs: vec![float_info("x", Some(x_dims))],
            outputs: vec![float_info("y", None), float_info("z", None)],
            initializers: vec![
                ("w1".into(), tensor(&[6, 40], 1)),
                ("b1".into(), tensor(&[40], 2)),
                ("w2".into(), tensor(&[40, 7], 3)),
                ("b2".into(), tensor(&[7], 4)),
                ("w3".into(), tensor(&[7, 3], 5)),
                ("b3".into(), tensor(&[3], 6)),
            ],
            nodes: vec![
                node("MatMul", &["x", "w1"], "m1"),
                node("Add", &["m1", "b1"], "h1"),
                node("Identity", &["b2"], "b2_id"),
                node("MatMul", &["h1", "w2"], "m2"),
                node("Add", &["b2_id", "m2"], "h2"),
                node("MatMul", &["h2", "w3"], "z"),
                node("Add", &["z", "b3"], "y"),
            ],
            ..Graph::default()
        })
    }

    #[test]
    fn bias_adds_go_into_the_products() {
        let mut model = model();
        assert_eq!(fuse(&mut model.graph), 2);
        let ops: Vec<_> = model.graph.nodes.iter().map(|n| &n.op_type[..]).collect();
        assert_eq!(
            ops,
            ["MatMulBias", "Identity", "MatMulBias", "MatMul", "Add"]
        );
        assert_eq!(model.graph.nodes[2].inputs, ["h1", "w2", "b2"]);
        assert_eq!(model.graph.nodes[2].outputs, ["h2"]);
    }

    #[test]
    fn fused_outputs_match_the_unfused_graph() {
        let x = Tensor::from_vec([3, 5, 6], values(90, 7)).unwrap();
        assert_optimized_matches(model, &x, 1e-5);
    }
}
