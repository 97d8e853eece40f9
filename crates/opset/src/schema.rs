//! Lookups in the table of default-domain operator versions (generated from onnx.defs).

use runnx_ir::{AttributeValue, DataType};

use crate::schemas::SCHEMAS;

/// The default value of an attribute, where the spec gives one.
#[derive(Debug)]
pub(crate) enum Default {
    None,
    Int(i64),
    Float(f32),
    Str(&'static str),
    Ints(&'static [i64]),
}

impl Default {
    /// Whether `value` is this default (so the attribute may be dropped without changing meaning).
    pub(crate) fn matches(&self, value: &AttributeValue) -> bool {
        match (self, value) {
            (Default::Int(d), AttributeValue::Int(v)) => d == v,
            (Default::Float(d), AttributeValue::Float(v)) => d == v,
            (Default::Str(d), AttributeValue::String(v)) => d.as_bytes() == v.as_slice(),
            (Default::Ints(d), AttributeValue::Ints(v)) => *d == v.as_slice(),
            _ => false,
        }
    }
}

/// One version of one operator.
#[derive(Debug)]
pub(crate) struct Schema {
    pub op: &'static str,
    pub since: i64,
    pub deprecated: bool,
    pub max_inputs: u32,
    pub max_outputs: u32,
    pub attrs: &'static [(&'static str, Default)],
    /// Per formal input: a bit per ONNX element-type code it accepts (all bits: not a tensor).
    pub inputs: &'static [u64],
    pub outputs: &'static [u64],
}

impl Schema {
    pub(crate) fn attr(&self, name: &str) -> Option<&Default> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, d)| d)
    }

    /// Whether input `i` (the last formal input repeats when variadic) accepts `dtype`.
    pub(crate) fn input_accepts(&self, i: usize, dtype: DataType) -> bool {
        accepts(self.inputs, i, dtype)
    }

    pub(crate) fn output_accepts(&self, i: usize, dtype: DataType) -> bool {
        accepts(self.outputs, i, dtype)
    }
}

fn accepts(masks: &[u64], i: usize, dtype: DataType) -> bool {
    let Some(mask) = masks.get(i).or(masks.last()) else {
        return true;
    };
    let code = dtype.onnx_code();
    (0..64).contains(&code) && mask & (1 << code) != 0
}

/// Every version of `op`, oldest first.
pub(crate) fn history(op: &str) -> &'static [Schema] {
    let start = SCHEMAS.partition_point(|s| s.op < op);
    let end = SCHEMAS.partition_point(|s| s.op <= op);
    &SCHEMAS[start..end]
}

/// The version of `op` a model importing `opset` uses, if the op exists there.
pub(crate) fn at(op: &str, opset: i64) -> Option<&'static Schema> {
    latest(op, opset).filter(|s| !s.deprecated)
}

/// The version of `op` a model importing `opset` uses, deprecated or not.
pub(crate) fn latest(op: &str, opset: i64) -> Option<&'static Schema> {
    history(op).iter().rev().find(|s| s.since <= opset)
}

/// Whether `op` has a version introduced exactly at `opset` (so its signature may change there).
pub(crate) fn changes_at(op: &str, opset: i64) -> Option<&'static Schema> {
    history(op).iter().find(|s| s.since == opset)
}

/// The lowest IR version that a model importing `opset` needs (onnx.helper.VERSION_TABLE).
pub(crate) fn min_ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19 | 20 => 9,
        21 | 22 => 10,
        23 => 11,
        24 => 12,
        25..=27 => 13,
        _ => 14,
    }
}
