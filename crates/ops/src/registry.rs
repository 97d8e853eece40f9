use std::collections::HashMap;

use crate::{Kernel, NodeInfo, OpError};

/// Builds a node's kernel; see the crate docs for the contract.
pub type BuildFn = fn(&NodeInfo) -> Result<Box<dyn Kernel>, OpError>;

/// One version of one op.
#[derive(Clone)]
pub struct OpDef {
    pub domain: &'static str,
    pub name: &'static str,
    /// The first opset version of `domain` these semantics apply to.
    pub since_version: i64,
    pub build: BuildFn,
}

/// Every op, by domain and name, each with its versions in ascending order.
#[derive(Default)]
pub struct Registry {
    ops: HashMap<&'static str, HashMap<&'static str, Vec<OpDef>>>,
}

impl Registry {
    /// Registers `build` for `name` from opset `since_version` on (until the next registered
    /// version of the same op).
    pub fn add(
        &mut self,
        domain: &'static str,
        name: &'static str,
        since_version: i64,
        build: BuildFn,
    ) {
        let versions = self.ops.entry(domain).or_default().entry(name).or_default();
        versions.push(OpDef {
            domain,
            name,
            since_version,
            build,
        });
        versions.sort_by_key(|d| d.since_version);
    }

    /// Registers one build function for several opset versions of an op whose build function
    /// reads `NodeInfo::opset` itself where versions differ.
    pub fn add_versions(
        &mut self,
        domain: &'static str,
        name: &'static str,
        versions: &[i64],
        build: BuildFn,
    ) {
        for &v in versions {
            self.add(domain, name, v, build);
        }
    }

    /// The definition that applies to `name` in `domain` at opset `version`.
    pub fn lookup(&self, domain: &str, name: &str, version: i64) -> Option<&OpDef> {
        let domain = if domain == "ai.onnx" { "" } else { domain };
        self.ops
            .get(domain)?
            .get(name)?
            .iter()
            .rev()
            .find(|d| d.since_version <= version)
    }

    /// Whether any version of the op exists (to tell "unknown op" from "too old an opset").
    pub fn knows(&self, domain: &str, name: &str) -> bool {
        let domain = if domain == "ai.onnx" { "" } else { domain };
        self.ops.get(domain).is_some_and(|m| m.contains_key(name))
    }

    pub fn ops(&self) -> impl Iterator<Item = &OpDef> {
        self.ops.values().flat_map(|m| m.values()).flatten()
    }
}
