//! The erf form of GELU as exporters write it, `0.5 · x · (1 + erf(x / √2))` in five nodes
//! (Div, Erf, Add, Mul, Mul), becomes one `com.microsoft.Gelu` node: one pass over the tensor
//! instead of five, with a vectorised erf. (onnxruntime has the same op, so saved models load
//! there too.)

use std::collections::HashMap;

use runnx_ir::{Graph, Node, TensorData};

use super::constants::constant_tensor;
use super::{apply_rewrites, is_onnx_op, producers, use_counts};

/// Fuses every GELU pattern; returns how many.
pub(super) fn fuse(graph: &mut Graph) -> usize {
    let counts = use_counts(graph);
    let producer = producers(graph);
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in node.inputs.iter().filter(|n| !n.is_empty()) {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut fusions = Vec::new();
    for (erf, node) in graph.nodes.iter().enumerate() {
        if is_onnx_op(node, "Erf") {
            if let Some(f) = match_gelu(graph, erf, &counts, &producer, &readers) {
                fusions.push(f);
            }
        }
    }
    let fused = fusions.len();
    let mut remove = vec![false; graph.nodes.len()];
    let mut replace: HashMap<usize, Node> = HashMap::new();
    for f in fusions {
        for i in [f.div, f.erf, f.add, f.mul_x, f.mul_half] {
            remove[i] = true;
        }
        let name = graph.nodes[f.erf].name.clone();
        replace.insert(
            f.last,
            Node {
                name: if name.is_empty() {
                    String::new()
                } else {
                    format!("{name}_gelu")
                },
                op_type: "Gelu".into(),
                domain: "com.microsoft".into(),
                inputs: vec![f.x],
                outputs: vec![f.y],
                ..Node::default()
            },
        );
    }
    apply_rewrites(graph, replace, &remove);
    fused
}

/// One matched pattern: node indices, the input `x` and the output `y`.
struct Gelu {
    div: usize,
    erf: usize,
    add: usize,
    mul_x: usize,
    mul_half: usize,
    /// The last of the five in graph order, where the fused node goes.
    last: usize,
    x: String,
    y: String,
}

/// `Div(x, √2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5)`, operands of Add and Mul in either
/// order, every intermediate read once and not a graph output.
fn match_gelu(
    graph: &Graph,
    erf: usize,
    counts: &HashMap<String, usize>,
    producer: &HashMap<String, usize>,
    readers: &HashMap<&str, Vec<usize>>,
) -> Option<Gelu> {
    let nodes = &graph.nodes;
    let single_use = |name: &str| counts.get(name) == Some(&1);
    let only_reader = |name: &str| -> Option<usize> {
        match readers.get(name)?.as_slice() {
            [r] if single_use(name) => Some(*r),
            _ => None,
        }
    };
    // The other operand of a binary node, given one of them.
    let other = |node: &Node, known: &str| -> Option<String> {
        match node.inputs.as_slice() {
            [a, b] if a == known => Some(b.clone()),
            [a, b] if b == known => Some(a.clone()),
            _ => None,
        }
    };
    let erf_in = nodes[erf].inputs.first()?;
    if !single_use(erf_in) {
        return None;
    }
    let div = *producer.get(erf_in)?;
    let div_node = &nodes[div];
    if !is_onnx_op(div_node, "Div") || div_node.inputs.len() != 2 {
        return None;
    }
    let x = div_node.inputs[0].clone();
    if !near(
        scalar_constant(graph, &div_node.inputs[1])?,
        std::f64::consts::SQRT_2,
    ) {
        return None;
    }
    let erf_out = nodes[erf].outputs.first()?;
    let add = only_reader(erf_out)?;
    if !is_onnx_op(&nodes[add], "Add")
        || !near(scalar_constant(graph, &other(&nodes[add], erf_out)?)?, 1.0)
    {
        return None;
    }
    let add_out = nodes[add].outputs.first()?;
    let mul_x = only_reader(add_out)?;
    if !is_onnx_op(&nodes[mul_x], "Mul") || other(&nodes[mul_x], add_out)? != x {
        return None;
    }
    let mul_out = nodes[mul_x].outputs.first()?;
    let mul_half = only_reader(mul_out)?;
    if !is_onnx_op(&nodes[mul_half], "Mul")
        || !near(
            scalar_constant(graph, &other(&nodes[mul_half], mul_out)?)?,
            0.5,
        )
    {
        return None;
    }
    Some(Gelu {
        div,
        erf,
        add,
        mul_x,
        mul_half,
        last: div.max(erf).max(add).max(mul_x).max(mul_half),
        x,
        y: nodes[mul_half].outputs.first()?.clone(),
    })
}

fn near(value: f64, want: f64) -> bool {
    (value - want).abs() <= 1e-6 * want.abs()
}

/// The value of a one-element float constant (see [`constant_tensor`]).
fn scalar_constant(graph: &Graph, name: &str) -> Option<f64> {
    let (_, tensor) = constant_tensor(graph, name)?;
    if tensor.len() != 1 {
        return None;
    }
    match tensor.data() {
        TensorData::Float(v) => Some(v[0] as f64),
        TensorData::Double(v) => Some(v[0]),
        TensorData::Float16(v) => Some(v[0].to_f64()),
        TensorData::Bfloat16(v) => Some(v[0].to_f64()),
        _ => None,
    }
}
