//! Helpers for the rewrite passes' tests: small graphs, and sessions run with and without
//! optimization.

use std::collections::BTreeMap;

use runnx_ir::{Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, Value};
use runnx_ir::{ValueInfo, ValueType};

use crate::{OptimizationLevel, Session, SessionOptions};

/// A default-domain node with one output.
pub(super) fn node(op: &str, inputs: &[&str], output: &str) -> Node {
    Node {
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        ..Node::default()
    }
}

pub(super) fn attr(name: &str, value: AttributeValue) -> Attribute {
    Attribute {
        name: name.into(),
        value,
        ref_attr_name: None,
    }
}

/// A float tensor value's declaration.
pub(super) fn float_info(name: &str, dims: Option<Vec<Dim>>) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        ty: ValueType::tensor(DataType::Float, dims),
        doc_string: String::new(),
    }
}

/// Deterministic values in [-1, 1), different for each seed.
pub(super) fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0 - 1.0)
        .collect()
}

/// A model of `graph` importing the default domain at opset 17.
pub(super) fn model_of(graph: Graph) -> Model {
    Model {
        ir_version: 8,
        opset_imports: BTreeMap::from([("".into(), 17)]),
        graph,
        ..Model::default()
    }
}

/// `model`'s outputs for input `x`, in a session at `level`.
pub(super) fn run(model: Model, level: OptimizationLevel, x: &Tensor) -> Vec<Tensor> {
    let options = SessionOptions {
        optimization_level: level,
        ..SessionOptions::default()
    };
    let session = Session::from_model(model, &options).unwrap();
    let outputs = session
        .run(vec![("x".into(), Value::Tensor(x.clone()))], None)
        .unwrap();
    outputs
        .into_iter()
        .map(|v| v.into_tensor().unwrap())
        .collect()
}

/// Runs `model()` with every optimization and without, and checks the float outputs agree
/// (NaN where the other has NaN, else within `tolerance` relative to 1 + |value|). Returns
/// the optimized outputs.
pub(super) fn assert_optimized_matches(
    model: fn() -> Model,
    x: &Tensor,
    tolerance: f32,
) -> Vec<Tensor> {
    let fused = run(model(), OptimizationLevel::All, x);
    let plain = run(model(), OptimizationLevel::Disabled, x);
    assert_eq!(fused.len(), plain.len());
    for (o, (f, p)) in fused.iter().zip(&plain).enumerate() {
        assert_eq!(f.shape(), p.shape(), "output {o}");
        let (Ok(a), Ok(b)) = (f.as_slice::<f32>(), p.as_slice::<f32>()) else {
            assert_eq!(f, p, "output {o}");
            continue;
        };
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            let same = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tolerance * (1.0 + b.abs());
            assert!(same, "output {o}[{i}]: {a} optimized, {b} not");
        }
    }
    fused
}
