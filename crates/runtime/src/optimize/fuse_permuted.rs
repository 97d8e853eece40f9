//! A MatMul whose operand comes through a Transpose, maybe with Muls by a scalar constant on
//! the way, becomes `ai.runnx.MatMulPermuted`: the product reads the operand through the
//! transpose's strides instead of a copy, and the scalars become its `alpha`. Exported
//! attention computes `Transpose(Q)·scale · Transpose(K)·scale` and `P · Transpose(V)` this way;
//! the Transposes copied as much data as the products read.
//!
//! A transposed value may also be read by Shape nodes (exporters take the batch size from it):
//! each becomes `Gather(Shape(x), perm)`, the same dimensions without the copy.
//!
//! runnx-only, like [`super::fuse_pool`]: applied by the session after any optimized model is
//! saved.

use std::collections::HashMap;

use runnx_ir::{Attribute, AttributeValue, Graph, Node, Tensor};
use runnx_ops::RUNNX_DOMAIN;

use super::constants::scalar_f32;
use super::{fresh_name, is_onnx_op, producers, rewrite_nodes, use_counts};

/// One operand's chain below a MatMul: what it multiplies in the end.
struct Operand {
    /// The value under the Transpose and Muls.
    source: String,
    perm: Vec<i64>,
    alpha: f32,
    /// The Transpose and Mul nodes the fused product replaces.
    absorbed: Vec<usize>,
    /// The Transpose's output, when Shape nodes read it too.
    transposed: String,
}

/// Fuses every eligible MatMul; returns how many.
pub(super) fn fuse(graph: &mut Graph) -> usize {
    let counts = use_counts(graph);
    let producer = producers(graph);
    let mut shape_readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (at, node) in graph.nodes.iter().enumerate() {
        if is_onnx_op(node, "Shape") && node.inputs.len() == 1 && node.outputs.len() == 1 {
            shape_readers.entry(&node.inputs[0]).or_default().push(at);
        }
    }
    let mut fused: HashMap<usize, Node> = HashMap::new();
    let mut remove = vec![false; graph.nodes.len()];
    // Shape readers to rebuild: (node, transpose permutation, the Transpose's input).
    let mut reshaped: Vec<(usize, Vec<i64>, String)> = Vec::new();
    for (at, matmul) in graph.nodes.iter().enumerate() {
        if !is_onnx_op(matmul, "MatMul") || matmul.inputs.len() != 2 || matmul.outputs.len() != 1 {
            continue;
        }
        // A constant B keeps the plain MatMul, which packs it once.
        if graph.initializer(&matmul.inputs[1]).is_some() {
            continue;
        }
        let operands = [0, 1].map(|side| {
            operand(
                graph,
                &matmul.inputs[side],
                &counts,
                &producer,
                &shape_readers,
            )
        });
        if operands.iter().all(Option::is_none) {
            continue;
        }
        let mut attributes = Vec::new();
        let mut inputs = matmul.inputs.clone();
        let mut alpha = 1.0;
        for (side, operand) in operands.into_iter().enumerate() {
            let Some(operand) = operand else {
                continue;
            };
            attributes.push(Attribute {
                name: ["perm_a", "perm_b"][side].into(),
                value: AttributeValue::Ints(operand.perm.clone()),
                ref_attr_name: None,
            });
            alpha *= operand.alpha;
            inputs[side] = operand.source.clone();
            for &node in &operand.absorbed {
                remove[node] = true;
            }
            for &reader in shape_readers
                .get(operand.transposed.as_str())
                .into_iter()
                .flatten()
            {
                reshaped.push((reader, operand.perm.clone(), operand.source.clone()));
            }
        }
        if alpha != 1.0 {
            attributes.push(Attribute {
                name: "alpha".into(),
                value: AttributeValue::Float(alpha),
                ref_attr_name: None,
            });
        }
        fused.insert(
            at,
            Node {
                name: matmul.name.clone(),
                op_type: "MatMulPermuted".into(),
                domain: RUNNX_DOMAIN.into(),
                inputs,
                outputs: matmul.outputs.clone(),
                attributes,
                ..Node::default()
            },
        );
    }
    let count = fused.len();
    if count == 0 {
        return 0;
    }
    let mut replace: HashMap<usize, Vec<Node>> = fused
        .into_iter()
        .map(|(at, node)| (at, vec![node]))
        .collect();
    for (at, perm, source) in reshaped {
        let nodes = shape_of_transpose(graph, &graph.nodes[at], &perm, &source);
        replace.insert(at, nodes);
    }
    rewrite_nodes(graph, replace, &remove);
    count
}

/// The Transpose (and scalar Muls) under `value`, when the MatMul alone reads each of their
/// outputs (Shape nodes may read the Transpose's too). Muls are taken only with a Transpose
/// under or above them, whose rank of at least 2 keeps a one-element scale from changing the
/// operand's shape.
fn operand(
    graph: &Graph,
    value: &str,
    counts: &HashMap<String, usize>,
    producer: &HashMap<String, usize>,
    shape_readers: &HashMap<&str, Vec<usize>>,
) -> Option<Operand> {
    let mut value = value.to_string();
    let mut alpha = 1.0f32;
    let mut absorbed = Vec::new();
    let mut transpose: Option<(Vec<i64>, String)> = None;
    loop {
        let shapes = shape_readers.get(value.as_str()).map_or(0, Vec::len);
        let Some(&at) = producer.get(&value) else {
            break;
        };
        let node = &graph.nodes[at];
        let only_reader = counts.get(&value) == Some(&1);
        // Opset 1-6 Muls broadcast through attributes: left alone.
        if is_onnx_op(node, "Mul")
            && node.inputs.len() == 2
            && node.attributes.is_empty()
            && only_reader
        {
            let Some((scale, other)) = (0..2)
                .find_map(|i| scalar_f32(graph, &node.inputs[i]).map(|c| (c, &node.inputs[1 - i])))
            else {
                break;
            };
            alpha *= scale;
            absorbed.push(at);
            value = other.clone();
            continue;
        }
        let readers_fit = counts.get(&value) == Some(&(1 + shapes));
        if transpose.is_none() && is_onnx_op(node, "Transpose") && readers_fit {
            let (Some(AttributeValue::Ints(perm)), Some(input)) = (
                node.attribute("perm").map(|a| &a.value),
                node.inputs.first(),
            ) else {
                break;
            };
            if perm.len() < 2 {
                break;
            }
            absorbed.push(at);
            transpose = Some((perm.clone(), value.clone()));
            value = input.clone();
            continue;
        }
        break;
    }
    let (perm, transposed) = transpose?;
    Some(Operand {
        source: value,
        perm,
        alpha,
        absorbed,
        transposed,
    })
}

/// `Shape(Transpose(source, perm))` (with its `start`/`end`) as `Gather(Shape(source), perm')`,
/// `perm'` the part of `perm` the slice keeps.
fn shape_of_transpose(graph: &Graph, shape: &Node, perm: &[i64], source: &str) -> Vec<Node> {
    let rank = perm.len() as i64;
    let bound = |name: &str, default: i64| {
        let v = match shape.attribute(name).map(|a| &a.value) {
            Some(AttributeValue::Int(v)) => *v,
            _ => default,
        };
        (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize
    };
    let (start, end) = (bound("start", 0), bound("end", rank));
    let kept: Vec<i64> = perm[start..end.max(start)].to_vec();
    let full = fresh_name(graph, &format!("{}_unpermuted", shape.outputs[0]));
    let indices = fresh_name(graph, &format!("{}_perm", shape.outputs[0]));
    vec![
        Node {
            name: format!("{}_unpermuted", shape.name),
            op_type: "Shape".into(),
            inputs: vec![source.to_string()],
            outputs: vec![full.clone()],
            ..Node::default()
        },
        Node {
            name: format!("{}_perm", shape.name),
            op_type: "Constant".into(),
            outputs: vec![indices.clone()],
            attributes: vec![Attribute {
                name: "value".into(),
                value: AttributeValue::Tensor(
                    Tensor::from_vec([kept.len()], kept).expect("a vector of its own length"),
                ),
                ref_attr_name: None,
            }],
            ..Node::default()
        },
        Node {
            name: shape.name.clone(),
            op_type: "Gather".into(),
            inputs: vec![full, indices],
            outputs: shape.outputs.clone(),
            ..Node::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use runnx_ir::{Dim, Model, Tensor};

    use super::super::testing::{
        assert_optimized_matches, attr, float_info, model_of, node, values,
    };
    use super::*;

    fn transpose(input: &str, perm: &[i64], output: &str) -> Node {
        Node {
            attributes: vec![attr("perm", AttributeValue::Ints(perm.to_vec()))],
            ..node("Transpose", &[input], output)
        }
    }

    fn shape(input: &str, output: &str, range: Option<(i64, i64)>) -> Node {
        let attributes = range.map_or_else(Vec::new, |(start, end)| {
            vec![
                attr("start", AttributeValue::Int(start)),
                attr("end", AttributeValue::Int(end)),
            ]
        });
        Node {
            attributes,
            ..node("Shape", &[input], output)
        }
    }

    /// Attention's products on x [batch, seq, heads, dim] = [2, 3, 4, 5], as exporters write
    /// them: scaled Q·Kᵀ from transposed copies, then P·V; the batch size read off Q's copy and
    /// a slice of V's shape. Then a transpose that is also a graph output (left alone).
    fn model() -> Model {
        let dims = [2, 3, 4, 5].map(Dim::Fixed).to_vec();
        let scalar = |v: f32| Tensor::from_vec([], vec![v]).unwrap();
        model_of(Graph {
            inputs: vec![float_info("x", Some(dims))],
            outputs: ["scores", "context", "q_shape", "v_shape", "t", "g"]
                .map(|name| float_info(name, None))
                .to_vec(),
            initializers: vec![("half".into(), scalar(0.5)), ("three".into(), scalar(3.0))],
            nodes: vec![
                transpose("x", &[0, 2, 1, 3], "q"),
                node("Mul", &["q", "half"], "q_scaled"),
                shape("q", "q_shape", None),
                transpose("x", &[0, 2, 3, 1], "k"),
                node("Mul", &["three", "k"], "k_scaled"),
                node("MatMul", &["q_scaled", "k_scaled"], "scores"),
                transpose("x", &[0, 2, 1, 3], "v"),
                shape("v", "v_shape", Some((1, -1))),
                node("MatMul", &["scores", "v"], "context"),
                transpose("x", &[0, 1, 3, 2], "t"),
                node("MatMul", &["x", "t"], "g"),
            ],
            ..Graph::default()
        })
    }

    #[test]
    fn transposes_and_scales_go_into_the_product() {
        let mut fused = model();
        assert_eq!(fuse(&mut fused.graph), 2);
        let ops: Vec<_> = fused.graph.nodes.iter().map(|n| &n.op_type[..]).collect();
        assert_eq!(
            ops,
            [
                "Shape",
                "Constant",
                "Gather",
                "MatMulPermuted",
                "Shape",
                "Constant",
                "Gather",
                "MatMulPermuted",
                "Transpose",
                "MatMul"
            ]
        );
        let scores = &fused.graph.nodes[3];
        assert_eq!(scores.inputs, ["x", "x"]);
        let alpha = scores.attribute("alpha").map(|a| &a.value);
        assert!(matches!(alpha, Some(AttributeValue::Float(a)) if *a == 1.5));
        let context = &fused.graph.nodes[7];
        assert_eq!(context.inputs, ["scores", "x"]);
        assert!(context.attribute("perm_a").is_none());
    }

    #[test]
    fn fused_outputs_match_the_unfused_graph() {
        let x = Tensor::from_vec([2, 3, 4, 5], values(120, 3)).unwrap();
        let fused = assert_optimized_matches(model, &x, 1e-5);
        assert_eq!(fused[2].as_slice::<i64>().unwrap(), [2, 4, 3, 5]);
        assert_eq!(fused[3].as_slice::<i64>().unwrap(), [4, 3]);
    }
}
