//! Inference rules per op, grouped by op family. A rule reads its node's inputs and attributes
//! from the [`NodeContext`] and sets its outputs; it returns [`RuleError::Unknown`] when it lacks
//! information, which is not an error, and [`RuleError::Invalid`] for a node that cannot run.
//!
//! - [`elementwise`]: unary and binary math, activations, comparisons, casts, quantization,
//!   reductions, normalizations, softmax, random generators.
//! - [`shape`]: shape and indexing ops (Reshape, Concat, Gather, Slice, Expand ...), MatMul and
//!   Gemm, and the data propagation of computed shapes.
//! - [`nn`]: convolution, pooling, image ops, recurrent nets, attention, signal processing.
//! - [`misc`]: control flow, sequences, optionals, strings, ai.onnx.ml, losses, training.

pub mod elementwise;
pub mod misc;
pub mod nn;
pub mod shape;

use runnx_ir::{DataType, ValueType};

use crate::context::{NodeContext, RuleError, RuleResult};

pub type Rule = fn(&mut NodeContext<'_>) -> RuleResult;

/// The rule for `op` in `domain` ("" is the default ONNX domain).
pub fn lookup(domain: &str, op: &str) -> Option<Rule> {
    match domain {
        "" => elementwise::rule(op)
            .or_else(|| shape::rule(op))
            .or_else(|| nn::rule(op))
            .or_else(|| misc::rule(op)),
        "com.microsoft" => nn::rule_microsoft(op),
        "ai.onnx.ml" => misc::rule_ml(op),
        "ai.onnx.preview.training" => misc::rule_training(op),
        "ai.onnx.preview" => nn::rule_preview(op),
        _ => None,
    }
}

/// Output `out` has input `input`'s type (element type and shape).
pub fn same_as_input(ctx: &mut NodeContext<'_>, input: usize, out: usize) -> RuleResult {
    let ty = ctx.input_type(input)?.clone();
    ctx.set_output(out, ty);
    Ok(())
}

/// Output `out` has input `input`'s shape (when known) and element type `dtype`.
pub fn shape_of_input_with(
    ctx: &mut NodeContext<'_>,
    input: usize,
    out: usize,
    dtype: DataType,
) -> RuleResult {
    let shape = match ctx.input_type(input) {
        Ok(ValueType::Tensor(t)) => t.shape.clone(),
        Ok(_) => {
            return Err(RuleError::invalid(format!(
                "input {input} must be a tensor"
            )))
        }
        Err(_) => None,
    };
    ctx.set_output_tensor(out, dtype, shape);
    Ok(())
}
