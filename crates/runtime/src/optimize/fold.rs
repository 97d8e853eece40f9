//! Constant and shape folding on the IR, for models saved optimized (`runnx optimize`): nodes
//! whose inputs are all constants are computed once and become initializers, and values whose
//! contents shape inference knows (a `Shape` of a static tensor, the arithmetic exporters do on
//! it) become initializers too. Dead nodes and unused initializers are removed afterwards.
//!
//! The session planner folds constants on its own at run time; this pass exists so the saved
//! file itself is smaller and simpler, in standard ops only.

use std::collections::{HashMap, HashSet};

use runnx_ir::{AttributeValue, Graph, Model, Node, Tensor, Value, ValueInfo, ValueType};

use super::use_counts;
use crate::{OptimizationLevel, RuntimeError, Session, SessionOptions};

/// A folded value larger than this (and larger than the node's inputs together) is not stored:
/// folding `ConstantOfShape` or `Expand` would only make the file bigger.
const MAX_GROWN_BYTES: usize = 1 << 20;

/// What one folding pass changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Nodes computed at optimization time and replaced by initializers.
    pub folded_nodes: usize,
    /// Values whose contents shape inference knew (computed shapes).
    pub folded_shapes: usize,
    /// Nodes removed because nothing reads their outputs.
    pub dead_nodes: usize,
    /// Identity nodes removed, their readers reading the Identity's input instead.
    pub bypassed_identities: usize,
}

/// Removes Identity nodes whose output is neither a graph output nor named inside a subgraph:
/// their readers read the input directly (exporters emit them to alias shared weights).
fn bypass_identities(graph: &mut Graph) -> usize {
    let mut in_subgraphs: HashSet<String> = HashSet::new();
    for node in &graph.nodes {
        super::for_each_subgraph(node, &mut |sub| collect_names(sub, &mut in_subgraphs));
    }
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut renames: HashMap<String, String> = HashMap::new();
    for node in &graph.nodes {
        let standard = node.domain.is_empty() || node.domain == "ai.onnx";
        if standard
            && node.op_type == "Identity"
            && node.inputs.len() == 1
            && !node.inputs[0].is_empty()
            && node.outputs.len() == 1
            && !outputs.contains(node.outputs[0].as_str())
            && !in_subgraphs.contains(&node.outputs[0])
        {
            let mut source = node.inputs[0].clone();
            while let Some(s) = renames.get(&source) {
                source = s.clone();
            }
            renames.insert(node.outputs[0].clone(), source);
        }
    }
    if renames.is_empty() {
        return 0;
    }
    graph.nodes.retain(|n| {
        !(n.op_type == "Identity" && n.outputs.first().is_some_and(|o| renames.contains_key(o)))
    });
    for node in &mut graph.nodes {
        for input in &mut node.inputs {
            if let Some(source) = renames.get(input) {
                *input = source.clone();
            }
        }
    }
    graph.value_info.retain(|v| !renames.contains_key(&v.name));
    renames.len()
}

/// Every value name a subgraph (and its subgraphs) mentions.
fn collect_names(graph: &Graph, names: &mut HashSet<String>) {
    for node in &graph.nodes {
        names.extend(node.inputs.iter().cloned());
        super::for_each_subgraph(node, &mut |sub| collect_names(sub, names));
    }
    names.extend(graph.outputs.iter().map(|o| o.name.clone()));
}

/// Folds until nothing changes, then removes dead nodes.
pub(crate) fn fold_and_prune(model: &mut Model) -> Result<FoldCounts, RuntimeError> {
    let mut counts = FoldCounts {
        bypassed_identities: bypass_identities(&mut model.graph),
        ..FoldCounts::default()
    };
    loop {
        let shapes = fold_known_contents(model);
        let nodes = fold_constant_nodes(model)?;
        counts.folded_shapes += shapes;
        counts.folded_nodes += nodes;
        if shapes + nodes == 0 {
            break;
        }
    }
    counts.dead_nodes = remove_dead_nodes(&mut model.graph);
    Ok(counts)
}

/// Names of initializers a caller cannot replace (not also listed as graph inputs).
fn fixed_constants(graph: &Graph) -> HashMap<String, Tensor> {
    let inputs: HashSet<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
    graph
        .initializers
        .iter()
        .filter(|(n, _)| !inputs.contains(n.as_str()))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect()
}

/// Replaces node outputs whose contents shape inference fully knows by initializers.
fn fold_known_contents(model: &mut Model) -> usize {
    let Ok(inference) = runnx_shapes::infer(model, &runnx_shapes::InferOptions::default()) else {
        return 0;
    };
    let mut known: HashMap<String, Tensor> = HashMap::new();
    for (name, contents) in &inference.contents {
        let Some(values) = contents.known() else {
            continue;
        };
        let Some(ValueType::Tensor(t)) = inference.get(name) else {
            continue;
        };
        let tensor = match t.dtype {
            runnx_ir::DataType::Int64 => Tensor::from_vec(contents.shape_usize(), values),
            runnx_ir::DataType::Int32 => Tensor::from_vec(
                contents.shape_usize(),
                values.iter().map(|&v| v as i32).collect::<Vec<i32>>(),
            ),
            _ => continue,
        };
        if let Ok(tensor) = tensor {
            known.insert(name.clone(), tensor);
        }
    }
    replace_by_initializers(&mut model.graph, known)
}

/// Computes every deterministic node whose inputs are all constants.
fn fold_constant_nodes(model: &mut Model) -> Result<usize, RuntimeError> {
    let mut constants = fixed_constants(&model.graph);
    let mut folded: HashMap<String, Tensor> = HashMap::new();
    for node in &model.graph.nodes {
        if !foldable(node) {
            continue;
        }
        let inputs: Option<Vec<(String, Tensor)>> = node
            .inputs
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| constants.get(n).map(|t| (n.clone(), t.clone())))
            .collect();
        let Some(inputs) = inputs else { continue };
        let Some(outputs) = evaluate(model, node, &inputs)? else {
            continue;
        };
        let input_bytes: usize = inputs.iter().map(|(_, t)| byte_size(t)).sum();
        if outputs
            .iter()
            .any(|(_, t)| byte_size(t) > MAX_GROWN_BYTES && byte_size(t) > input_bytes)
        {
            continue;
        }
        for (name, tensor) in outputs {
            constants.insert(name.clone(), tensor.clone());
            folded.insert(name, tensor);
        }
    }
    Ok(replace_by_initializers(&mut model.graph, folded))
}

fn byte_size(t: &Tensor) -> usize {
    (t.len() * t.dtype().bit_width()).div_ceil(8)
}

/// Nodes never folded: random generators (each run differs), nodes with subgraphs, and ops
/// outside the default domain (the saved model must keep its meaning in any runtime).
fn foldable(node: &Node) -> bool {
    let has_subgraph = node.attributes.iter().any(|a| {
        matches!(
            a.value,
            AttributeValue::Graph(_) | AttributeValue::Graphs(_)
        )
    });
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    standard && !has_subgraph && !node.inputs.is_empty() && !crate::plan::is_nondeterministic(node)
}

/// Runs one node on constant inputs in a throwaway one-node session. `None` when an output is
/// not a tensor (sequences and optionals cannot be initializers).
fn evaluate(
    model: &Model,
    node: &Node,
    inputs: &[(String, Tensor)],
) -> Result<Option<Vec<(String, Tensor)>>, RuntimeError> {
    let outputs: Vec<String> = node
        .outputs
        .iter()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect();
    let graph = Graph {
        name: "fold".into(),
        initializers: inputs.to_vec(),
        nodes: vec![node.clone()],
        outputs: outputs
            .iter()
            .map(|n| ValueInfo {
                name: n.clone(),
                ty: ValueType::Unknown,
                doc_string: String::new(),
            })
            .collect(),
        ..Graph::default()
    };
    let single = Model {
        ir_version: model.ir_version,
        opset_imports: model.opset_imports.clone(),
        functions: model.functions.clone(),
        graph,
        ..Model::default()
    };
    let options = SessionOptions {
        intra_op_threads: 1,
        optimization_level: OptimizationLevel::Disabled,
        optimized_model_path: None,
    };
    let session = Session::from_model(single, &options)?;
    let values = session
        .run(Vec::new(), None)
        .map_err(|e| RuntimeError::Model(format!("folding {}: {e}", node.describe())))?;
    let mut result = Vec::with_capacity(values.len());
    for (name, value) in outputs.into_iter().zip(values) {
        match value {
            Value::Tensor(t) => result.push((name, t)),
            _ => return Ok(None),
        }
    }
    Ok(Some(result))
}

/// Makes each named value an initializer and drops the nodes that produced only such values
/// (or values nobody reads).
fn replace_by_initializers(graph: &mut Graph, values: HashMap<String, Tensor>) -> usize {
    if values.is_empty() {
        return 0;
    }
    let counts = use_counts(graph);
    let mut replaced = 0;
    let mut kept = Vec::with_capacity(graph.nodes.len());
    for node in std::mem::take(&mut graph.nodes) {
        let outputs: Vec<&String> = node.outputs.iter().filter(|n| !n.is_empty()).collect();
        let all_known = !outputs.is_empty()
            && outputs
                .iter()
                .all(|n| values.contains_key(*n) || !counts.contains_key(*n));
        if all_known && outputs.iter().any(|n| values.contains_key(*n)) {
            replaced += 1;
            for name in outputs {
                if let Some(t) = values.get(name) {
                    if counts.contains_key(name) {
                        graph.initializers.push((name.clone(), t.clone()));
                    }
                }
            }
        } else {
            kept.push(node);
        }
    }
    graph.nodes = kept;
    replaced
}

/// Removes nodes whose outputs nothing reads, repeatedly; returns how many.
fn remove_dead_nodes(graph: &mut Graph) -> usize {
    let mut removed = 0;
    loop {
        let counts = use_counts(graph);
        let before = graph.nodes.len();
        graph.nodes.retain(|n| {
            n.outputs
                .iter()
                .any(|o| !o.is_empty() && counts.contains_key(o))
        });
        let gone = before - graph.nodes.len();
        if gone == 0 {
            break;
        }
        removed += gone;
    }
    let defined: HashSet<String> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().cloned())
        .collect();
    graph.value_info.retain(|v| defined.contains(&v.name));
    removed
}
