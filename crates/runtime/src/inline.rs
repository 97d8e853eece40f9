//! Model-local functions are expanded into their callers' graphs before planning, so the
//! executor only ever sees primitive ops.

use std::collections::HashMap;
use std::sync::Arc;

use runnx_ir::{Attribute, Function, Node};

use crate::RuntimeError;

/// Deepest function-calls-function nesting accepted (recursion is invalid ONNX).
const MAX_DEPTH: usize = 32;

/// Returns `nodes` with every call of a model-local function replaced by the function's body.
pub(crate) fn inline_functions(
    nodes: &[Node],
    functions: &[Arc<Function>],
) -> Result<Vec<Node>, RuntimeError> {
    if functions.is_empty() {
        return Ok(nodes.to_vec());
    }
    let mut out = Vec::with_capacity(nodes.len());
    let mut counter = 0usize;
    for node in nodes {
        expand(node, functions, 0, &mut counter, &mut out)?;
    }
    Ok(out)
}

fn find<'a>(functions: &'a [Arc<Function>], node: &Node) -> Option<&'a Arc<Function>> {
    functions
        .iter()
        .find(|f| f.name == node.op_type && f.domain == node.domain)
}

fn expand(
    node: &Node,
    functions: &[Arc<Function>],
    depth: usize,
    counter: &mut usize,
    out: &mut Vec<Node>,
) -> Result<(), RuntimeError> {
    let Some(function) = find(functions, node) else {
        out.push(node.clone());
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(RuntimeError::Model(format!(
            "{}: function '{}' nests deeper than {MAX_DEPTH} calls (recursive functions are invalid)",
            node.describe(),
            function.name
        )));
    }
    *counter += 1;
    let prefix = format!("{}__{}_{}", function.name, node.name, counter);
    // Formal parameter -> actual value name in the caller.
    let mut rename: HashMap<&str, String> = HashMap::new();
    for (i, formal) in function.inputs.iter().enumerate() {
        rename.insert(formal, node.inputs.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in function.outputs.iter().enumerate() {
        rename.insert(formal, node.outputs.get(i).cloned().unwrap_or_default());
    }
    let map_name = |name: &String| -> String {
        if name.is_empty() {
            return String::new();
        }
        match rename.get(name.as_str()) {
            Some(actual) => actual.clone(),
            None => format!("{prefix}/{name}"),
        }
    };
    for body_node in &function.nodes {
        let mut n = body_node.clone();
        n.name = format!("{prefix}/{}", body_node.name);
        n.inputs = body_node.inputs.iter().map(map_name).collect();
        n.outputs = body_node.outputs.iter().map(map_name).collect();
        n.attributes = resolve_attributes(&body_node.attributes, node, function);
        expand(&n, functions, depth + 1, counter, out)?;
    }
    Ok(())
}

/// Replaces attribute references (`ref_attr_name`) with the caller's value or the function's
/// default; references to attributes the caller does not set and that have no default vanish.
fn resolve_attributes(attrs: &[Attribute], caller: &Node, function: &Function) -> Vec<Attribute> {
    attrs
        .iter()
        .filter_map(|a| match &a.ref_attr_name {
            None => Some(a.clone()),
            Some(reference) => caller
                .attribute(reference)
                .or_else(|| {
                    function
                        .attribute_defaults
                        .iter()
                        .find(|d| &d.name == reference)
                })
                .map(|src| Attribute {
                    name: a.name.clone(),
                    value: src.value.clone(),
                    ref_attr_name: None,
                }),
        })
        .collect()
}
