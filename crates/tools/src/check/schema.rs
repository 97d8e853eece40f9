//! onnx's operator schemas and release table, generated from the pinned onnx package by
//! `scripts/gen_op_schemas.py` (see the header of each file).

use std::collections::HashMap;
use std::sync::OnceLock;

const SCHEMAS: &str = include_str!("onnx_schemas.txt");
const VERSIONS: &str = include_str!("onnx_versions.txt");

/// One version of one operator's signature.
#[derive(Debug)]
pub struct Schema {
    pub since_version: i64,
    pub deprecated: bool,
    pub min_inputs: usize,
    /// `None`: unbounded (variadic).
    pub max_inputs: Option<usize>,
    pub min_outputs: usize,
    pub max_outputs: Option<usize>,
    /// Attribute name, AttributeProto type name (`INT`, `FLOATS`...), required.
    pub attributes: Vec<(&'static str, &'static str, bool)>,
}

/// Domain, then op type, then versions in ascending order.
type Table = HashMap<&'static str, HashMap<&'static str, Vec<Schema>>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Table = HashMap::new();
        for line in SCHEMAS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<&'static str> = line.split('|').collect();
            let n = |s: &str| s.parse::<i64>().expect("a number in onnx_schemas.txt");
            let bound = |s: &str| usize::try_from(n(s)).ok();
            let attributes = f[8]
                .split(',')
                .filter(|a| !a.is_empty())
                .map(|a| {
                    let (name, kind) = a.split_once(':').expect("name:TYPE");
                    match kind.strip_suffix('!') {
                        Some(kind) => (name, kind, true),
                        None => (name, kind, false),
                    }
                })
                .collect();
            table
                .entry(f[0])
                .or_default()
                .entry(f[1])
                .or_default()
                .push(Schema {
                    since_version: n(f[2]),
                    deprecated: f[3] == "1",
                    min_inputs: n(f[4]) as usize,
                    max_inputs: bound(f[5]),
                    min_outputs: n(f[6]) as usize,
                    max_outputs: bound(f[7]),
                    attributes,
                });
        }
        table
    })
}

/// The schema of `op` in `domain` ("" or "ai.onnx" for the default) at opset `version`: the
/// latest one introduced at or before it.
pub fn lookup(domain: &str, op: &str, version: i64) -> Option<&'static Schema> {
    let domain = if domain == "ai.onnx" { "" } else { domain };
    table()
        .get(domain)?
        .get(op)?
        .iter()
        .rev()
        .find(|s| s.since_version <= version)
}

/// The opset version `op` first appeared in, when onnx knows it at all.
pub fn introduced(domain: &str, op: &str) -> Option<i64> {
    let domain = if domain == "ai.onnx" { "" } else { domain };
    table()
        .get(domain)?
        .get(op)?
        .first()
        .map(|s| s.since_version)
}

/// Whether onnx defines any op in `domain`.
pub fn knows_domain(domain: &str) -> bool {
    let domain = if domain == "ai.onnx" { "" } else { domain };
    table().contains_key(domain)
}

/// Rows of onnx's release table: (IR version, ai.onnx opset, ai.onnx.ml opset).
fn releases() -> impl Iterator<Item = (i64, i64, i64)> {
    VERSIONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<i64> = l
                .split('|')
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (f[0], f[1], f[2])
        })
}

/// The newest IR version and opsets onnx knows.
pub fn latest() -> (i64, i64, i64) {
    releases().fold((0, 0, 0), |(a, b, c), (x, y, z)| {
        (a.max(x), b.max(y), c.max(z))
    })
}

/// The IR version of the first release with opset `version` of `domain` (ai.onnx or
/// ai.onnx.ml); `None` for other domains or unknown versions.
pub fn min_ir_for(domain: &str, version: i64) -> Option<i64> {
    let ml = match domain {
        "" | "ai.onnx" => false,
        "ai.onnx.ml" => true,
        _ => return None,
    };
    releases()
        .find(|&(_, onnx, onnx_ml)| {
            if ml {
                onnx_ml >= version
            } else {
                onnx >= version
            }
        })
        .map(|(ir, _, _)| ir)
}
