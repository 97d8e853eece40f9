//! Conv, then optionally an Add of another value of the same shape (a residual connection),
//! then optionally an activation, becomes one `com.microsoft.FusedConv`:
//! `Y = activation(Conv(X, W, B) + Z)`. The GEMM behind the Conv applies the addition and the
//! activation to each output tile while it is in cache, instead of two more passes over memory.

use runnx_ir::{Attribute, AttributeValue, DataType, Graph, Node, Tensor};

use super::{is_onnx_op, use_counts};

/// An activation FusedConv can apply, with its onnxruntime name and parameters.
struct Activation {
    name: &'static str,
    params: Vec<f32>,
}

/// Fuses every eligible chain; returns how many Conv nodes were rewritten.
pub(super) fn fuse(graph: &mut Graph, opset: i64) -> usize {
    let mut fused = 0;
    let mut index = 0;
    while index < graph.nodes.len() {
        if is_onnx_op(&graph.nodes[index], "Conv") && graph.nodes[index].outputs.len() == 1 {
            if fuse_one(graph, index, opset) {
                fused += 1;
            }
        }
        index += 1;
    }
    fused
}

/// Rewrites the Conv at `index` and removes what it absorbed. Returns whether it changed.
fn fuse_one(graph: &mut Graph, index: usize, opset: i64) -> bool {
    let counts = use_counts(graph);
    let single_use = |name: &str| counts.get(name) == Some(&1);
    let readers = |name: &str| -> Vec<usize> {
        graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|i| i == name))
            .map(|(i, _)| i)
            .collect()
    };
    // Only f32 and f64 convs: for float16 the separate nodes round in between, the fused one
    // would not. The filter's type tells the conv's type without running inference.
    let conv = &graph.nodes[index];
    let weight_type = conv
        .inputs
        .get(1)
        .and_then(|w| graph.initializer(w))
        .map(Tensor::dtype);
    if !matches!(weight_type, Some(DataType::Float | DataType::Double)) {
        return false;
    }
    let conv_out = conv.outputs[0].clone();
    let mut absorbed = Vec::new();
    let mut current = conv_out;
    let mut residual = None;
    // The one node reading `current`, when nothing else (graph outputs, subgraphs) does.
    let sole_reader = |name: &str| match readers(name).as_slice() {
        [only] if single_use(name) => Some(*only),
        _ => None,
    };
    let Some(mut next) = sole_reader(&current) else {
        return false;
    };
    let add = &graph.nodes[next];
    // Opset 1-6 Add broadcasts only with attributes, and not numpy-style: leave those alone.
    // Otherwise Z is added in the epilogue when it has Y's shape, by a broadcasting add if not.
    if is_onnx_op(add, "Add") && add.inputs.len() == 2 && (opset >= 7 || add.attributes.is_empty())
    {
        let other = if add.inputs[0] == current {
            &add.inputs[1]
        } else {
            &add.inputs[0]
        };
        if other != &current {
            residual = Some(other.clone());
            absorbed.push(next);
            current = add.outputs[0].clone();
            match sole_reader(&current) {
                Some(reader) => next = reader,
                None => return finish(graph, index, absorbed, residual, None, current),
            }
        }
    }
    let activation = activation_of(graph, &graph.nodes[next], &current, opset);
    if let Some(activation) = activation {
        absorbed.push(next);
        let out = graph.nodes[next].outputs[0].clone();
        return finish(graph, index, absorbed, residual, Some(activation), out);
    }
    finish(graph, index, absorbed, residual, None, current)
}

fn finish(
    graph: &mut Graph,
    index: usize,
    absorbed: Vec<usize>,
    residual: Option<String>,
    activation: Option<Activation>,
    output: String,
) -> bool {
    if absorbed.is_empty() {
        return false;
    }
    let conv = &mut graph.nodes[index];
    conv.domain = "com.microsoft".to_string();
    conv.op_type = "FusedConv".to_string();
    conv.inputs.resize(3, String::new());
    if let Some(z) = residual {
        conv.inputs.push(z);
    }
    while conv.inputs.last().is_some_and(String::is_empty) {
        conv.inputs.pop();
    }
    if let Some(a) = activation {
        conv.attributes.push(attribute(
            "activation",
            AttributeValue::String(a.name.into()),
        ));
        if !a.params.is_empty() {
            conv.attributes.push(attribute(
                "activation_params",
                AttributeValue::Floats(a.params),
            ));
        }
    }
    conv.outputs = vec![output];
    let mut absorbed = absorbed;
    absorbed.sort_unstable();
    for i in absorbed.into_iter().rev() {
        graph.nodes.remove(i);
    }
    true
}

fn attribute(name: &str, value: AttributeValue) -> Attribute {
    Attribute {
        name: name.to_string(),
        value,
        ref_attr_name: None,
    }
}

/// The activation `node` applies to `input`, if FusedConv can take it over.
fn activation_of(graph: &Graph, node: &Node, input: &str, opset: i64) -> Option<Activation> {
    if node.inputs.first().map(String::as_str) != Some(input) || node.outputs.len() != 1 {
        return None;
    }
    let float = |name: &str, default: f32| match node.attribute(name).map(|a| &a.value) {
        None => Some(default),
        Some(AttributeValue::Float(v)) => Some(*v),
        Some(_) => None,
    };
    let simple = |name| {
        Some(Activation {
            name,
            params: vec![],
        })
    };
    match node.op_type.as_str() {
        _ if !(node.domain.is_empty() || node.domain == "ai.onnx") => None,
        "Relu" => simple("Relu"),
        "Sigmoid" => simple("Sigmoid"),
        "Tanh" => simple("Tanh"),
        "LeakyRelu" => Some(Activation {
            name: "LeakyRelu",
            params: vec![float("alpha", 0.01)?],
        }),
        "HardSigmoid" => Some(Activation {
            name: "HardSigmoid",
            params: vec![float("alpha", 0.2)?, float("beta", 0.5)?],
        }),
        "Clip" if opset < 11 => Some(Activation {
            name: "Clip",
            params: vec![float("min", f32::MIN)?, float("max", f32::MAX)?],
        }),
        "Clip" => {
            let bound = |i: usize, default: f32| match node.inputs.get(i).filter(|n| !n.is_empty())
            {
                None => Some(default),
                Some(name) => scalar_f32(graph.initializer(name)?),
            };
            Some(Activation {
                name: "Clip",
                params: vec![bound(1, f32::MIN)?, bound(2, f32::MAX)?],
            })
        }
        _ => None,
    }
}

fn scalar_f32(t: &Tensor) -> Option<f32> {
    match t.as_slice::<f32>() {
        Ok([v]) => Some(*v),
        _ => None,
    }
}
