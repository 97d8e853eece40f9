//! `runnx compare`: the outputs of two models, or of a model and reference outputs, on the same
//! inputs; and, for two models, the first node where they part (like Polygraphy's bisection):
//! every intermediate value is exposed as an output of both models and compared in node order.

use std::collections::HashMap;

use runnx_ir::{Model, Value, ValueInfo, ValueType};

use crate::numeric::{tensor_closeness, Closeness, Tolerance};

/// One output of A against the value of the same name in B.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueDiff {
    pub name: String,
    pub status: DiffStatus,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DiffStatus {
    Compared {
        closeness: Closeness,
        shape: Vec<usize>,
    },
    ShapeMismatch {
        a: Vec<usize>,
        b: Vec<usize>,
    },
    /// Not comparable: different element types that are not both numeric, or non-tensor values.
    Incomparable(String),
    /// B has no value of this name.
    Missing,
}

impl ValueDiff {
    pub fn passes(&self) -> bool {
        matches!(&self.status, DiffStatus::Compared { closeness, .. } if closeness.passes())
    }
}

/// Compares value `a` (from the model under test) with `b` (the reference).
pub fn diff_value(name: &str, a: &Value, b: Option<&Value>, tol: Tolerance) -> ValueDiff {
    let status = match (a, b) {
        (_, None) => DiffStatus::Missing,
        (Value::Tensor(a), Some(Value::Tensor(b))) => {
            if a.shape() != b.shape() {
                DiffStatus::ShapeMismatch {
                    a: a.shape().to_vec(),
                    b: b.shape().to_vec(),
                }
            } else {
                match tensor_closeness(a, b, tol) {
                    Some(closeness) => DiffStatus::Compared {
                        closeness,
                        shape: a.shape().to_vec(),
                    },
                    None => {
                        DiffStatus::Incomparable(format!("{} against {}", a.dtype(), b.dtype()))
                    }
                }
            }
        }
        (a, Some(b)) if a == b => DiffStatus::Compared {
            closeness: Closeness::default(),
            shape: Vec::new(),
        },
        (a, Some(b)) => {
            DiffStatus::Incomparable(format!("{} against {}", a.describe(), b.describe()))
        }
    };
    ValueDiff {
        name: name.to_string(),
        status,
    }
}

/// Compares each named value of `a` with the value of the same name in `b`, in `a`'s order.
pub fn diff_values(
    a: &[(String, Value)],
    b: &HashMap<String, Value>,
    tol: Tolerance,
) -> Vec<ValueDiff> {
    a.iter()
        .map(|(name, v)| diff_value(name, v, b.get(name), tol))
        .collect()
}

/// Makes every value a node of the main graph computes an output of the graph (type unknown),
/// after the declared outputs. Returns the names added, in node order.
pub fn expose_intermediates(model: &mut Model) -> Vec<String> {
    let mut known: std::collections::HashSet<String> =
        model.graph.outputs.iter().map(|o| o.name.clone()).collect();
    let mut added = Vec::new();
    for n in &model.graph.nodes {
        for o in &n.outputs {
            if !o.is_empty() && known.insert(o.clone()) {
                added.push(o.clone());
            }
        }
    }
    model
        .graph
        .outputs
        .extend(added.iter().map(|name| ValueInfo {
            name: name.clone(),
            ty: ValueType::Unknown,
            doc_string: String::new(),
        }));
    added
}

/// The first node of A whose output differs from the value of the same name in B.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// `node 'name' (Op)`, as errors name nodes.
    pub node: String,
    pub op_type: String,
    pub diff: ValueDiff,
    /// The node's inputs that both models computed, all within tolerance (graph inputs and
    /// initializers are not compared).
    pub matching_inputs: Vec<String>,
}

/// Result of a per-node comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerNode {
    /// Intermediate values computed by both models (same name) and compared.
    pub compared: usize,
    pub first_divergence: Option<Divergence>,
}

/// Walks A's nodes in order and compares each output that B also computed.
pub fn first_divergence(
    model_a: &Model,
    values_a: &HashMap<String, Value>,
    values_b: &HashMap<String, Value>,
    tol: Tolerance,
) -> PerNode {
    let mut result = PerNode::default();
    for n in &model_a.graph.nodes {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            let (Some(a), Some(b)) = (values_a.get(o), values_b.get(o)) else {
                continue;
            };
            result.compared += 1;
            let diff = diff_value(o, a, Some(b), tol);
            if !diff.passes() && result.first_divergence.is_none() {
                let matching_inputs = n
                    .inputs
                    .iter()
                    .filter(|i| {
                        matches!((values_a.get(*i), values_b.get(*i)), (Some(x), Some(y))
                            if diff_value(i, x, Some(y), tol).passes())
                    })
                    .cloned()
                    .collect();
                result.first_divergence = Some(Divergence {
                    node: n.describe(),
                    op_type: n.op_type.clone(),
                    diff,
                    matching_inputs,
                });
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnx_ir::{Node, Tensor};

    fn t(v: &[f32]) -> Value {
        Value::Tensor(Tensor::from_vec([v.len()], v.to_vec()).unwrap())
    }

    #[test]
    fn finds_the_first_diverging_node() {
        let mut m = Model::default();
        for (i, (x, y)) in [("in", "a"), ("a", "b"), ("b", "c")].iter().enumerate() {
            m.graph.nodes.push(Node {
                name: format!("n{i}"),
                op_type: "Relu".into(),
                inputs: vec![x.to_string()],
                outputs: vec![y.to_string()],
                ..Default::default()
            });
        }
        m.graph.outputs.push(ValueInfo {
            name: "c".into(),
            ty: ValueType::Unknown,
            doc_string: String::new(),
        });
        assert_eq!(expose_intermediates(&mut m), ["a", "b"]);
        assert_eq!(m.graph.outputs.len(), 3);
        let a: HashMap<String, Value> = [
            ("a".into(), t(&[1.0])),
            ("b".into(), t(&[2.0])),
            ("c".into(), t(&[3.0])),
        ]
        .into();
        let b: HashMap<String, Value> = [
            ("a".into(), t(&[1.0])),
            ("b".into(), t(&[2.5])),
            ("c".into(), t(&[9.0])),
        ]
        .into();
        let r = first_divergence(&m, &a, &b, Tolerance::default());
        assert_eq!(r.compared, 3);
        let d = r.first_divergence.unwrap();
        assert_eq!(d.node, "node 'n1' (Relu)");
        assert_eq!(d.matching_inputs, ["a"]);
        assert!(!d.diff.passes());
    }
}
