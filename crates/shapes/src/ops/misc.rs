//! (rules to be written)

use super::Rule;

pub fn rule(op: &str) -> Option<Rule> {
    let _ = op;
    None
}

/// ai.onnx.ml ops.
pub fn rule_ml(op: &str) -> Option<Rule> {
    let _ = op;
    None
}

/// ai.onnx.preview.training ops.
pub fn rule_training(op: &str) -> Option<Rule> {
    let _ = op;
    None
}
