//! Graph rewrites applied once, when a session is created, before planning.
//!
//! Each pass takes the top-level graph and rewrites it in place, keeping its meaning:
//! - basic (standard ONNX ops only, so the result is a portable model): BatchNormalization folded
//!   into the Conv before it, unused initializers dropped. Constant folding happens later, in
//!   the planner, where the kernels that compute the folded values live.
//! - extended and all: Conv followed by a residual Add and/or an activation becomes one
//!   `com.microsoft.FusedConv` node (the op onnxruntime uses for the same fusion, so an
//!   optimized model saved by runnx also loads there), computed in one pass over the output;
//!   the five-node erf GELU becomes one `com.microsoft.Gelu`; a transformer block's bias and
//!   residual Adds go into `com.microsoft.SkipLayerNormalization` and `BiasGelu`.
//! - all, for the session only ([`optimize_for_engine`], after any optimized model is saved):
//!   rewrites into runnx's own ops (`ai.runnx`), which no other runtime loads: a conv and the
//!   max pool after it become one `FusedConvMaxPool`, a product by a weight matrix and the
//!   bias Add after it one `MatMulBias`, a Softmax and the NaN guard after it one
//!   `SoftmaxNanTo`.
//!
//! A pass only touches values it can see every use of: a value read by a subgraph, listed as a
//! graph output, or read twice is never fused away.

mod constants;
mod conv_bn;
mod fold;
mod fuse_bias;
mod fuse_conv;
mod fuse_gelu;
mod fuse_permuted;
mod fuse_pool;
mod fuse_softmax;
mod fuse_transformer;
#[cfg(test)]
mod testing;

pub use fold::FoldCounts;

use std::collections::HashMap;

use runnx_ir::{AttributeValue, Graph, Model, Node};

use crate::OptimizationLevel;

/// Rewrites `model`'s main graph for `level`.
pub(crate) fn optimize(model: &mut Model, level: OptimizationLevel) {
    if level == OptimizationLevel::Disabled {
        return;
    }
    let opset = model.opset("").unwrap_or(1);
    conv_bn::fold_batch_norms(&mut model.graph, opset);
    if level >= OptimizationLevel::Extended {
        let fused = fuse_conv::fuse(&mut model.graph, opset)
            + fuse_gelu::fuse(&mut model.graph)
            + fuse_transformer::fuse(model);
        if fused > 0 {
            model
                .opset_imports
                .entry("com.microsoft".to_string())
                .or_insert(1);
        }
    }
    drop_unused_initializers(&mut model.graph);
}

/// The rewrites into runnx-only ops, at level all: applied by the session after it saved any
/// optimized model, so that saved models stay portable.
pub(crate) fn optimize_for_engine(model: &mut Model, level: OptimizationLevel) {
    if level < OptimizationLevel::All {
        return;
    }
    let opset = model.opset("").unwrap_or(1);
    let fused = fuse_pool::fuse(&mut model.graph)
        + fuse_bias::fuse(&mut model.graph)
        + fuse_softmax::fuse(&mut model.graph, opset)
        + fuse_permuted::fuse(&mut model.graph);
    if fused > 0 {
        model
            .opset_imports
            .entry(runnx_ops::RUNNX_DOMAIN.to_string())
            .or_insert(1);
    }
}

/// Optimizes a model to be saved (`runnx optimize`): constant and shape folding, then the
/// session's rewrites for `level`, then dead nodes and unused initializers removed. At the basic
/// level the result uses standard ONNX ops only.
pub fn optimize_model(
    model: &mut Model,
    level: OptimizationLevel,
) -> Result<FoldCounts, crate::RuntimeError> {
    if level == OptimizationLevel::Disabled {
        return Ok(FoldCounts::default());
    }
    let first = fold::fold_and_prune(model)?;
    optimize(model, level);
    // Folding BatchNormalization into Conv may leave new constants and dead nodes.
    let second = fold::fold_and_prune(model)?;
    let counts = FoldCounts {
        folded_nodes: first.folded_nodes + second.folded_nodes,
        folded_shapes: first.folded_shapes + second.folded_shapes,
        dead_nodes: first.dead_nodes + second.dead_nodes,
        bypassed_identities: first.bypassed_identities + second.bypassed_identities,
    };
    drop_unused_initializers(&mut model.graph);
    Ok(counts)
}

/// How many times each value is read: by node inputs, by subgraphs (any name a subgraph
/// mentions counts, shadowing aside: conservative), and once more for each graph output.
pub(crate) fn use_counts(graph: &Graph) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for node in &graph.nodes {
        for name in node.inputs.iter().filter(|n| !n.is_empty()) {
            *counts.entry(name.clone()).or_default() += 1;
        }
        for_each_subgraph(node, &mut |sub| count_subgraph_names(sub, &mut counts));
    }
    for out in &graph.outputs {
        *counts.entry(out.name.clone()).or_default() += 1;
    }
    counts
}

fn count_subgraph_names(graph: &Graph, counts: &mut HashMap<String, usize>) {
    for node in &graph.nodes {
        for name in node.inputs.iter().filter(|n| !n.is_empty()) {
            *counts.entry(name.clone()).or_default() += 1;
        }
        for_each_subgraph(node, &mut |sub| count_subgraph_names(sub, counts));
    }
    for out in &graph.outputs {
        *counts.entry(out.name.clone()).or_default() += 1;
    }
}

fn for_each_subgraph(node: &Node, f: &mut impl FnMut(&Graph)) {
    for attr in &node.attributes {
        match &attr.value {
            AttributeValue::Graph(g) => f(g),
            AttributeValue::Graphs(gs) => gs.iter().for_each(|g| f(g)),
            _ => {}
        }
    }
}

/// Index of the node producing each value.
pub(crate) fn producers(graph: &Graph) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|n| !n.is_empty()) {
            map.insert(out.clone(), i);
        }
    }
    map
}

/// Rebuilds `graph.nodes` in order: node `i` replaced by the nodes `replace[i]` where given
/// (one fused node, or a few where a pass splits one), dropped where `remove[i]`, kept
/// otherwise.
pub(crate) fn rewrite_nodes(
    graph: &mut Graph,
    mut replace: HashMap<usize, Vec<Node>>,
    remove: &[bool],
) {
    let nodes = std::mem::take(&mut graph.nodes);
    graph.nodes = nodes
        .into_iter()
        .enumerate()
        .flat_map(|(i, n)| match replace.remove(&i) {
            Some(new) => new,
            None if remove[i] => Vec::new(),
            None => vec![n],
        })
        .collect();
}

/// [`rewrite_nodes`] for passes that fuse each pattern into one node, when there is anything to
/// rewrite; returns how many nodes were replaced.
pub(crate) fn apply_rewrites(
    graph: &mut Graph,
    replace: HashMap<usize, Node>,
    remove: &[bool],
) -> usize {
    let replaced = replace.len();
    if replaced > 0 {
        let replace = replace.into_iter().map(|(at, node)| (at, vec![node]));
        rewrite_nodes(graph, replace.collect(), remove);
    }
    replaced
}

/// True for a node of the default ONNX domain with this op type.
pub(crate) fn is_onnx_op(node: &Node, op_type: &str) -> bool {
    node.op_type == op_type && (node.domain.is_empty() || node.domain == "ai.onnx")
}

/// A name not yet used by any value or initializer of `graph`, built from `base`.
pub(crate) fn fresh_name(graph: &Graph, base: &str) -> String {
    let taken = |name: &str| {
        graph.initializers.iter().any(|(n, _)| n == name)
            || graph.inputs.iter().any(|v| v.name == name)
            || graph
                .nodes
                .iter()
                .any(|n| n.outputs.iter().any(|o| o == name))
    };
    let mut name = base.to_string();
    let mut k = 1;
    while taken(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// Removes initializers nothing reads (weights replaced by folded copies). Initializers that are
/// also graph inputs stay: a caller may feed them.
fn drop_unused_initializers(graph: &mut Graph) {
    let counts = use_counts(graph);
    let inputs: Vec<String> = graph.inputs.iter().map(|v| v.name.clone()).collect();
    graph
        .initializers
        .retain(|(name, _)| counts.contains_key(name) || inputs.contains(name));
}
