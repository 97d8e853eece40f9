//! The bias and residual Adds of a transformer block, absorbed by the op after them (the
//! fusions onnxruntime's transformer optimizer makes, with its op names, so saved models load
//! there too):
//! - `LayerNormalization(Add(Add(m, bias), skip))` over the last axis becomes
//!   `com.microsoft.SkipLayerNormalization(m, skip, gamma, beta, bias)`; without a bias Add,
//!   `LayerNormalization(Add(a, b))` becomes `SkipLayerNormalization(a, b, gamma, beta)`.
//! - `Gelu(Add(m, bias))` (erf form) becomes `com.microsoft.BiasGelu(m, bias)`.
//!
//! Both take the sum in the pass that reads it anyway, saving one or two passes over the
//! activations and one or two nodes each. The shapes come from shape inference: the operands
//! must provably have the shapes these ops require (no broadcasting beyond the bias vector).

use std::collections::HashMap;

use runnx_ir::{Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, ValueType};
use runnx_shapes::Inference;

use super::constants::constant_vector;
use super::{apply_rewrites, is_onnx_op, producers, use_counts};

/// Fuses every eligible pattern of `model`'s main graph; returns how many nodes were rewritten.
pub(super) fn fuse(model: &mut Model) -> usize {
    let graph = &model.graph;
    let candidate = |n: &Node| is_onnx_op(n, "LayerNormalization") || is_gelu(n);
    if !graph.nodes.iter().any(candidate) {
        return 0;
    }
    let Ok(inference) = runnx_shapes::infer(model, &runnx_shapes::InferOptions::default()) else {
        return 0;
    };
    let shapes = Shapes {
        graph: &model.graph,
        inference: &inference,
    };
    let rewrites = find_rewrites(&shapes);
    let fused = rewrites.len();
    apply(&mut model.graph, rewrites);
    fused
}

/// One fusion: the node at `at` is replaced by `node`, the nodes in `absorbed` are removed.
struct Rewrite {
    at: usize,
    node: Node,
    absorbed: Vec<usize>,
}

fn find_rewrites(shapes: &Shapes) -> Vec<Rewrite> {
    let graph = shapes.graph;
    let counts = use_counts(graph);
    let producer = producers(graph);
    // The producing Add of `name` when only one node reads `name` (and no graph output or
    // subgraph does), so the Add can go.
    let sole_add = |name: &str| -> Option<usize> {
        if counts.get(name) != Some(&1) {
            return None;
        }
        let i = *producer.get(name)?;
        let add = &graph.nodes[i];
        let plain = add.inputs.len() == 2 && add.outputs.len() == 1 && add.attributes.is_empty();
        (is_onnx_op(add, "Add") && plain).then_some(i)
    };
    // `Add(m, bias)` at `add` with bias a constant float vector of `hidden` values:
    // `(m, bias initializer or constant name)`.
    let bias_add = |add: usize, hidden: usize| -> Option<(String, String)> {
        let inputs = &graph.nodes[add].inputs;
        [(0, 1), (1, 0)].into_iter().find_map(|(m, b)| {
            let bias = constant_vector(graph, &inputs[b], hidden)?;
            Some((inputs[m].clone(), bias))
        })
    };
    let mut rewrites = Vec::new();
    let mut taken = vec![false; graph.nodes.len()];
    for (at, node) in graph.nodes.iter().enumerate() {
        let found = if is_onnx_op(node, "LayerNormalization") {
            skip_layer_norm(shapes, at, &sole_add, &bias_add)
        } else if is_gelu(node) {
            bias_gelu(shapes, at, &sole_add, &bias_add)
        } else {
            None
        };
        if let Some(rewrite) = found {
            // Patterns cannot overlap (each absorbs Adds only its own node reads), but be sure.
            if rewrite.absorbed.iter().all(|&i| !taken[i]) {
                rewrite.absorbed.iter().for_each(|&i| taken[i] = true);
                rewrites.push(rewrite);
            }
        }
    }
    rewrites
}

fn skip_layer_norm(
    shapes: &Shapes,
    at: usize,
    sole_add: &dyn Fn(&str) -> Option<usize>,
    bias_add: &dyn Fn(usize, usize) -> Option<(String, String)>,
) -> Option<Rewrite> {
    let graph = shapes.graph;
    let ln = &graph.nodes[at];
    // Only the normalised output may be used: SkipLayerNormalization's mean and inverse
    // standard deviation outputs are float whatever stash_type says.
    if ln.outputs.iter().skip(1).any(|o| !o.is_empty()) || ln.inputs.len() < 2 {
        return None;
    }
    let x = &ln.inputs[0];
    let shape = shapes.float_shape(x)?;
    // onnxruntime's SkipLayerNormalization takes (batch, sequence, hidden) or (rows, hidden).
    if !(2..=3).contains(&shape.len()) {
        return None;
    }
    let Dim::Fixed(hidden) = shape[shape.len() - 1] else {
        return None;
    };
    let axis = match ln.attribute("axis").map(|a| &a.value) {
        None => -1,
        Some(AttributeValue::Int(v)) => *v,
        Some(_) => return None,
    };
    let stash = match ln.attribute("stash_type").map(|a| &a.value) {
        None => 1,
        Some(AttributeValue::Int(v)) => *v,
        Some(_) => return None,
    };
    if (axis != -1 && axis != shape.len() as i64 - 1) || stash != 1 {
        return None;
    }
    let epsilon = match ln.attribute("epsilon").map(|a| &a.value) {
        None => 1e-5,
        Some(AttributeValue::Float(v)) => *v,
        Some(_) => return None,
    };
    let gamma = constant_vector(graph, &ln.inputs[1], hidden)?;
    let beta = match ln.inputs.get(2).filter(|b| !b.is_empty()) {
        Some(b) => constant_vector(graph, b, hidden)?,
        None => String::new(),
    };
    let add = sole_add(x)?;
    let (a, b) = (&graph.nodes[add].inputs[0], &graph.nodes[add].inputs[1]);
    if !(shapes.same(a, &shape) && shapes.same(b, &shape)) {
        return None;
    }
    let mut absorbed = vec![add];
    // One operand may itself be `Add(m, bias)`: the linear layer's bias.
    let with_bias = [(a, b), (b, a)].into_iter().find_map(|(sum, skip)| {
        let inner = sole_add(sum)?;
        let (m, bias) = bias_add(inner, hidden)?;
        shapes
            .same(&m, &shape)
            .then(|| (inner, m, skip.clone(), bias))
    });
    let (input, skip, bias) = match with_bias {
        Some((inner, m, skip, bias)) => {
            absorbed.push(inner);
            (m, skip, bias)
        }
        None => (a.clone(), b.clone(), String::new()),
    };
    let mut inputs = vec![input, skip, gamma, beta, bias];
    while inputs.last().is_some_and(String::is_empty) {
        inputs.pop();
    }
    Some(Rewrite {
        at,
        node: Node {
            name: ln.name.clone(),
            op_type: "SkipLayerNormalization".into(),
            domain: "com.microsoft".into(),
            inputs,
            outputs: vec![ln.outputs[0].clone()],
            attributes: vec![Attribute {
                name: "epsilon".into(),
                value: AttributeValue::Float(epsilon),
                ref_attr_name: None,
            }],
            ..Node::default()
        },
        absorbed,
    })
}

fn bias_gelu(
    shapes: &Shapes,
    at: usize,
    sole_add: &dyn Fn(&str) -> Option<usize>,
    bias_add: &dyn Fn(usize, usize) -> Option<(String, String)>,
) -> Option<Rewrite> {
    let gelu = &shapes.graph.nodes[at];
    let add = sole_add(gelu.inputs.first()?)?;
    // The bias must run along the last axis of `m` itself: Add's result has m's shape.
    let (m, bias) = [0, 1].into_iter().find_map(|side| {
        let m = &shapes.graph.nodes[add].inputs[side];
        let shape = shapes.float_shape(m)?;
        let Some(&Dim::Fixed(hidden)) = shape.last() else {
            return None;
        };
        bias_add(add, hidden).filter(|(found, _)| found == m)
    })?;
    Some(Rewrite {
        at,
        node: Node {
            name: gelu.name.clone(),
            op_type: "BiasGelu".into(),
            domain: "com.microsoft".into(),
            inputs: vec![m, bias],
            outputs: gelu.outputs.clone(),
            ..Node::default()
        },
        absorbed: vec![add],
    })
}

/// The erf GELU: `com.microsoft.Gelu`, or ONNX Gelu without the tanh approximation.
fn is_gelu(node: &Node) -> bool {
    let exact = match node.attribute("approximate").map(|a| &a.value) {
        None => true,
        Some(AttributeValue::String(s)) => s.as_slice() == b"none",
        Some(_) => false,
    };
    (node.op_type == "Gelu" && node.domain == "com.microsoft" && node.attributes.is_empty())
        || (is_onnx_op(node, "Gelu") && exact)
}

/// What shape inference found, for the questions the patterns ask.
struct Shapes<'a> {
    graph: &'a Graph,
    inference: &'a Inference,
}

impl Shapes<'_> {
    /// The shape of a float tensor value, when its rank is known.
    fn float_shape(&self, name: &str) -> Option<Vec<Dim>> {
        let ty = match self.inference.get(name) {
            Some(ty) => ty,
            None => &self.graph.inputs.iter().find(|i| i.name == name)?.ty,
        };
        match ty {
            ValueType::Tensor(t) if t.dtype == DataType::Float => t.shape.clone(),
            _ => None,
        }
    }

    /// Whether `name` is a float tensor of exactly `shape`: every dim equal as a number or as
    /// the same named dimension.
    fn same(&self, name: &str, shape: &[Dim]) -> bool {
        let Some(own) = self.float_shape(name) else {
            return false;
        };
        own.len() == shape.len()
            && own.iter().zip(shape).all(|(a, b)| match (a, b) {
                (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
                (Dim::Symbol(x), Dim::Symbol(y)) => x == y,
                _ => false,
            })
    }
}

/// Replaces and removes nodes as the rewrites say, keeping the order of the rest.
fn apply(graph: &mut Graph, rewrites: Vec<Rewrite>) {
    let mut remove = vec![false; graph.nodes.len()];
    let mut replace: HashMap<usize, Node> = HashMap::new();
    for r in rewrites {
        r.absorbed.iter().for_each(|&i| remove[i] = true);
        replace.insert(r.at, r.node);
    }
    apply_rewrites(graph, replace, &remove);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use runnx_ir::{Tensor, ValueInfo};

    use super::*;

    fn node(op: &str, domain: &str, inputs: &[&str], output: &str) -> Node {
        Node {
            op_type: op.into(),
            domain: domain.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            ..Node::default()
        }
    }

    fn float_input(name: &str, dims: Vec<Dim>) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            ty: ValueType::tensor(DataType::Float, Some(dims)),
            doc_string: String::new(),
        }
    }

    fn vector(n: usize) -> Tensor {
        Tensor::from_vec([n], vec![0.5f32; n]).unwrap()
    }

    /// A BERT block's tail as exporters write it: `LayerNorm(Add(Add(bias, MatMul(x, w)),
    /// skip))`, parameters behind Identity nodes, then a linear layer and Gelu. `skip` is
    /// declared with `skip_dims`.
    fn block(skip_dims: Vec<Dim>) -> Model {
        let x_dims = vec![
            Dim::Symbol("batch".into()),
            Dim::Symbol("seq".into()),
            Dim::Fixed(4),
        ];
        let graph = Graph {
            inputs: vec![
                float_input("x", x_dims.clone()),
                float_input("skip", skip_dims),
            ],
            outputs: vec![float_input("out", vec![])],
            initializers: vec![
                (
                    "w".into(),
                    Tensor::from_vec([4, 4], vec![0.1f32; 16]).unwrap(),
                ),
                ("b".into(), vector(4)),
                ("gamma".into(), vector(4)),
                ("beta".into(), vector(4)),
                (
                    "w2".into(),
                    Tensor::from_vec([4, 8], vec![0.1f32; 32]).unwrap(),
                ),
                ("b2".into(), vector(8)),
            ],
            nodes: vec![
                node("Identity", "", &["b"], "b_id"),
                node("Identity", "", &["gamma"], "gamma_id"),
                node("MatMul", "", &["x", "w"], "mm"),
                node("Add", "", &["b_id", "mm"], "biased"),
                node("Add", "", &["biased", "skip"], "sum"),
                Node {
                    attributes: vec![Attribute {
                        name: "epsilon".into(),
                        value: AttributeValue::Float(1e-12),
                        ref_attr_name: None,
                    }],
                    ..node("LayerNormalization", "", &["sum", "gamma_id", "beta"], "ln")
                },
                node("MatMul", "", &["ln", "w2"], "mm2"),
                node("Add", "", &["mm2", "b2"], "pre"),
                node("Gelu", "com.microsoft", &["pre"], "out"),
            ],
            ..Graph::default()
        };
        Model {
            ir_version: 8,
            opset_imports: BTreeMap::from([("".into(), 17), ("com.microsoft".into(), 1)]),
            graph,
            ..Model::default()
        }
    }

    fn ops(model: &Model) -> Vec<&str> {
        let graph = &model.graph;
        graph
            .nodes
            .iter()
            .filter(|n| n.op_type != "Identity")
            .map(|n| n.op_type.as_str())
            .collect()
    }

    #[test]
    fn bias_and_residual_adds_go_into_the_ops_after_them() {
        let x_dims = vec![
            Dim::Symbol("batch".into()),
            Dim::Symbol("seq".into()),
            Dim::Fixed(4),
        ];
        let mut model = block(x_dims);
        assert_eq!(fuse(&mut model), 2);
        assert_eq!(
            ops(&model),
            ["MatMul", "SkipLayerNormalization", "MatMul", "BiasGelu"]
        );
        let sln = &model
            .graph
            .nodes
            .iter()
            .find(|n| n.op_type == "SkipLayerNormalization");
        let sln = sln.unwrap();
        // The parameters are read directly, not through the Identity nodes.
        assert_eq!(sln.inputs, ["mm", "skip", "gamma", "beta", "b"]);
        assert_eq!(sln.outputs, ["ln"]);
        assert_eq!(
            sln.attribute("epsilon").unwrap().value,
            AttributeValue::Float(1e-12)
        );
        let gelu = model.graph.nodes.last().unwrap();
        assert_eq!(
            (gelu.inputs.as_slice(), gelu.outputs.as_slice()),
            (
                &["mm2".to_string(), "b2".to_string()][..],
                &["out".to_string()][..]
            )
        );
    }

    #[test]
    fn a_skip_that_broadcasts_is_left_alone() {
        // (1, seq, 4) against (batch, seq, 4): SkipLayerNormalization would need broadcasting.
        let mut model = block(vec![
            Dim::Fixed(1),
            Dim::Symbol("seq".into()),
            Dim::Fixed(4),
        ]);
        assert_eq!(fuse(&mut model), 1);
        assert_eq!(
            ops(&model),
            [
                "MatMul",
                "Add",
                "Add",
                "LayerNormalization",
                "MatMul",
                "BiasGelu"
            ]
        );
    }
}
