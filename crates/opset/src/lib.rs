//! Opset version conversion for the default ONNX domain, like `onnx.version_converter`.
//!
//! A model moves one opset at a time. At each step, every node whose operator got a new version
//! at that opset is rewritten by the adapter for that (op, version) if the signature changed
//! (attributes that became inputs, renamed ops, new semantics), then checked against the schema
//! it lands on: attributes, inputs and outputs the other version lacks are dropped when they
//! hold their default and refused otherwise, and going down, declared element types must be
//! ones the older version accepts. Most version bumps only add types, so most nodes just move.

mod context;
mod fit;
mod rewrites;
mod schema;
mod schemas;

use std::collections::BTreeSet;
use std::sync::Arc;

use runnx_ir::graph::canonical_domain;
use runnx_ir::{AttributeValue, Graph, Model, Node};

use context::{add_initializers, Ctx, Names, Scope};
use rewrites::Direction;

/// Why a model cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum OpsetError {
    #[error("the model does not import the default ONNX domain")]
    NoDefaultOpset,
    #[error("target opset {target} is outside the known range 1..={latest}")]
    BadTarget { target: i64, latest: i64 },
    #[error("{node}: cannot convert from opset {from} to {to}: {reason}")]
    Unsupported {
        node: String,
        from: i64,
        to: i64,
        reason: String,
    },
    #[error("operators not available at opset {opset}: {}", ops.join(", "))]
    MissingOps { opset: i64, ops: Vec<String> },
}

/// Converts `model`'s default-domain nodes to opset `target`, one opset at a time.
pub fn convert_opset(model: &Model, target: i64) -> Result<Model, OpsetError> {
    let source = model.opset("").ok_or(OpsetError::NoDefaultOpset)?;
    if !(1..=schemas::LATEST).contains(&target) {
        return Err(OpsetError::BadTarget {
            target,
            latest: schemas::LATEST,
        });
    }
    let mut out = model.clone();
    let mut run = Run {
        names: Names::of_model(model),
        legacy_inputs: model.ir_version < 4,
        missing: BTreeSet::new(),
    };
    let mut opset = source;
    while opset != target {
        let step = if target > opset {
            Step {
                from: opset,
                to: opset + 1,
            }
        } else {
            Step {
                from: opset,
                to: opset - 1,
            }
        };
        run.graph(&mut out.graph, &Scope::default(), step)?;
        if !run.missing.is_empty() {
            return Err(OpsetError::MissingOps {
                opset: step.to,
                ops: std::mem::take(&mut run.missing).into_iter().collect(),
            });
        }
        opset = step.to;
    }
    for (domain, version) in out.opset_imports.iter_mut() {
        if canonical_domain(domain).is_empty() {
            *version = target;
        }
    }
    out.ir_version = out.ir_version.max(schema::min_ir_version(target));
    if run.legacy_inputs && out.ir_version >= 4 {
        // Initializers were listed as inputs only because IR 3 required it; from IR 4 that
        // would make them overridable, so they stop being constants.
        let g = &mut out.graph;
        let inits: BTreeSet<&String> = g.initializers.iter().map(|(n, _)| n).collect();
        g.inputs.retain(|i| !inits.contains(&i.name));
    }
    Ok(out)
}

/// One opset step, up (`to = from + 1`) or down (`to = from - 1`).
#[derive(Clone, Copy)]
struct Step {
    from: i64,
    to: i64,
}

impl Step {
    fn up(self) -> bool {
        self.to > self.from
    }

    /// The opset whose operator versions this step crosses (the newer of the two).
    fn newer(self) -> i64 {
        self.from.max(self.to)
    }
}

struct Run {
    names: Names,
    legacy_inputs: bool,
    /// Operators found with no version at the step's target opset.
    missing: BTreeSet<String>,
}

impl Run {
    fn graph(&mut self, graph: &mut Graph, outer: &Scope, step: Step) -> Result<(), OpsetError> {
        let scope = Scope::enter(outer, graph, self.legacy_inputs);
        let mut ctx = Ctx {
            names: &mut self.names,
            scope: &scope,
            new_initializers: Vec::new(),
        };
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let mut subgraph_nodes = Vec::new();
        for node in std::mem::take(&mut graph.nodes) {
            if node.attributes.iter().any(|a| {
                matches!(
                    a.value,
                    AttributeValue::Graph(_) | AttributeValue::Graphs(_)
                )
            }) {
                subgraph_nodes.push(nodes.len());
            }
            nodes.extend(convert_node(&mut ctx, node, step, &mut self.missing)?);
        }
        let new_initializers = std::mem::take(&mut ctx.new_initializers);
        add_initializers(graph, new_initializers, self.legacy_inputs);
        for i in subgraph_nodes {
            for a in &mut nodes[i].attributes {
                match &mut a.value {
                    AttributeValue::Graph(g) => self.graph(Arc::make_mut(g), &scope, step)?,
                    AttributeValue::Graphs(gs) => {
                        for g in gs {
                            self.graph(Arc::make_mut(g), &scope, step)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        graph.nodes = nodes;
        Ok(())
    }
}

/// Converts one node across `step`: its adapter if the op changed there, then the schema checks.
fn convert_node(
    ctx: &mut Ctx,
    node: Node,
    step: Step,
    missing: &mut BTreeSet<String>,
) -> Result<Vec<Node>, OpsetError> {
    if !canonical_domain(&node.domain).is_empty() || schema::history(&node.op_type).is_empty() {
        return Ok(vec![node]);
    }
    let refuse = |node: &Node, reason: String| OpsetError::Unsupported {
        node: node.describe(),
        from: step.from,
        to: step.to,
        reason,
    };
    let Some(before) = schema::latest(&node.op_type, step.from) else {
        return Ok(vec![node]);
    };
    // Up: the op changes at the new opset, or the model starts on a deprecated version.
    // Down: the version the node is on was introduced at the opset being left.
    let changed = if step.up() {
        schema::changes_at(&node.op_type, step.to)
            .map(|s| s.since)
            .or(before.deprecated.then_some(before.since))
    } else {
        (before.since == step.from).then_some(before.since)
    };
    let Some(version) = changed else {
        return Ok(vec![node]);
    };
    let direction = if step.up() {
        Direction::Up
    } else {
        Direction::Down
    };
    let described = node.clone();
    let mut nodes = match rewrites::find(&node.op_type, version, direction) {
        Some(adapter) => adapter(ctx, node).map_err(|r| refuse(&described, r))?,
        None => vec![node],
    };
    for n in &mut nodes {
        if !canonical_domain(&n.domain).is_empty() {
            continue;
        }
        let Some(after) = schema::at(&n.op_type, step.to) else {
            missing.insert(n.op_type.clone());
            continue;
        };
        let old = if n.op_type == before.op {
            before
        } else {
            after
        };
        fit::fit_to_schema(ctx, n, old, after, step.newer()).map_err(|r| refuse(&described, r))?;
    }
    Ok(nodes)
}
