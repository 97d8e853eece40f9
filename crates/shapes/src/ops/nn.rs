//! (rules to be written)

use super::Rule;

pub fn rule(op: &str) -> Option<Rule> {
    let _ = op;
    None
}

/// com.microsoft ops (FusedConv, written by runnx's optimizer).
pub fn rule_microsoft(op: &str) -> Option<Rule> {
    let _ = op;
    None
}

/// ai.onnx.preview ops.
pub fn rule_preview(op: &str) -> Option<Rule> {
    let _ = op;
    None
}
