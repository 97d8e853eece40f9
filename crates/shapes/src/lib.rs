//! Static and symbolic type and shape inference on the runnx IR, like
//! `onnx.shape_inference.infer_shapes`: every node's output types and shapes from its inputs'
//! types, its attributes and the constants it reads.
//!
//! Dimensions stay symbolic where the model names them (`batch`), and small integer tensors
//! computed in the graph (`Shape -> Gather -> Concat`) are tracked element by element, so the
//! shapes exporters compute for `Reshape` or `Expand` resolve to sizes (onnx does this only with
//! `data_prop=True`).
//!
//! - [`infer`] returns the types of the main graph's values; [`infer_shapes`] also writes them into
//!   the model as `value_info` (and onto graph outputs), keeping everything else.
//! - Each op's rule lives in [`ops`], grouped like the op families; a rule reads a
//!   [`NodeContext`] and sets output types. Ops without a rule leave their outputs unknown (an
//!   error in strict mode).

pub mod context;
pub mod dims;
mod engine;
mod merge;
pub mod ops;
#[cfg(test)]
pub(crate) mod testing;
pub mod value;

use std::collections::BTreeSet;

use runnx_ir::{Model, ValueInfo, ValueType};

pub use context::{NodeContext, RuleError, RuleResult};
pub use merge::merge_types;
pub use value::{SymInt, SymValue};

#[derive(Clone, Debug, Default)]
pub struct InferOptions {
    /// Fail on the first invalid node, type conflict or op without a rule (onnx's
    /// `strict_mode`); otherwise collect them in [`Inference::problems`] and go on.
    pub strict: bool,
}

/// A problem found during inference.
#[derive(Debug, Clone, PartialEq)]
pub enum InferError {
    Node { node: String, message: String },
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InferError::Node { node, message } => write!(f, "{node}: {message}"),
        }
    }
}

impl std::error::Error for InferError {}

/// What inference found about the main graph.
#[derive(Debug, Clone, Default)]
pub struct Inference {
    /// Every node output of the main graph, in production order, with its type (`Unknown` when
    /// nothing is known).
    pub values: Vec<(String, ValueType)>,
    /// Invalid nodes and conflicts with declared types (non-strict mode).
    pub problems: Vec<InferError>,
    /// Ops met that have no inference rule (their outputs keep only what the model declares).
    pub ops_without_rule: BTreeSet<String>,
    /// Node outputs whose contents are known (small integer tensors such as computed shapes).
    pub contents: Vec<(String, SymValue)>,
}

impl Inference {
    pub fn get(&self, name: &str) -> Option<&ValueType> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Infers the types and shapes of every value in `model`'s main graph.
pub fn infer(model: &Model, options: &InferOptions) -> Result<Inference, InferError> {
    let engine = engine::Engine::new(model, options);
    let scope = engine.infer_main()?;
    let values = scope
        .produced
        .iter()
        .map(|name| (name.clone(), scope.types[name].clone()))
        .collect();
    let contents = scope
        .produced
        .iter()
        .filter_map(|name| scope.value_of(name).map(|v| (name.clone(), v.clone())))
        .collect();
    Ok(Inference {
        values,
        contents,
        problems: engine.problems.take(),
        ops_without_rule: engine.ops_without_rule.take(),
    })
}

/// Infers like [`infer`] and writes the results into the model: graph outputs get the merged
/// type, every other inferred value a `value_info` entry (replacing an older one).
pub fn infer_shapes(model: &mut Model, options: &InferOptions) -> Result<Inference, InferError> {
    let inference = infer(model, options)?;
    let graph = &mut model.graph;
    for (name, ty) in &inference.values {
        if *ty == ValueType::Unknown {
            continue;
        }
        if let Some(out) = graph.outputs.iter_mut().find(|o| &o.name == name) {
            out.ty = ty.clone();
        } else if let Some(vi) = graph.value_info.iter_mut().find(|v| &v.name == name) {
            vi.ty = ty.clone();
        } else {
            graph.value_info.push(ValueInfo {
                name: name.clone(),
                ty: ty.clone(),
                doc_string: String::new(),
            });
        }
    }
    Ok(inference)
}
