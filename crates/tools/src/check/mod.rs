//! `runnx check`: what `onnx.checker.check_model(model, full_check=True)` checks, each problem
//! naming where it is (node, op, initializer, value) and what is wrong.
//!
//! - IR version and opset imports: set, known to onnx, consistent with each other (an opset
//!   newer than the IR version it came with is a warning: onnx's checker allows it);
//! - every graph (subgraphs and function bodies included): inputs defined before use (nodes
//!   topologically sorted), single assignment, outputs defined, names unique;
//! - nodes: domains imported, ops known to onnx or to the runnx registry, arity and attributes
//!   (names, types, required ones) against the op's schema at the imported opset;
//! - initializers: data matching their declared shape and element type, agreeing with any
//!   graph input or value_info of the same name;
//! - value_info: valid types, naming values the graph defines (warnings: onnx's checker does not
//!   look at value_info), agreeing with initializers (an error).
//!
//! The schemas come from the pinned onnx (see [`schema`]). The check works on the protobuf, so
//! a model the IR would refuse still gets a complete list of what is wrong with it.

mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use runnx_ir::DataType;
use runnx_onnx::proto::{self, attribute_proto::AttributeType, type_proto};
use runnx_onnx::LoadedModel;

/// How bad a problem is: errors make the model invalid; warnings are worth knowing (an op
/// onnx defines that runnx cannot run yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong with a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// Where: `model`, `graph 'main'`, `node 'conv1' (Conv)`, `initializer 'w'`...
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.location, self.message)
    }
}

/// Checks a loaded model and returns every problem found, errors and warnings, in model order.
pub fn check_model(loaded: &LoadedModel) -> Vec<Problem> {
    let m = &loaded.proto;
    let mut c = Checker {
        problems: Vec::new(),
        loaded,
        functions: m
            .functions
            .iter()
            .map(|f| {
                (
                    (
                        f.domain.clone().unwrap_or_default(),
                        f.name.clone().unwrap_or_default(),
                    ),
                    f,
                )
            })
            .collect(),
        ir_version: m.ir_version.unwrap_or(0),
    };
    let opsets = c.model_header(m);
    match &m.graph {
        Some(g) => {
            let scope = Scope::default();
            c.graph(g, &opsets, &scope, true, "graph");
        }
        None => c.error("model", "has no graph"),
    }
    let mut seen = HashSet::new();
    for f in &m.functions {
        let name = f.name.clone().unwrap_or_default();
        let domain = f.domain.clone().unwrap_or_default();
        let loc = format!("function '{domain}.{name}'");
        if name.is_empty() {
            c.error(&loc, "has no name");
        }
        if !seen.insert((domain.clone(), name.clone(), f.overload.clone())) {
            c.error(&loc, "is defined twice");
        }
        c.function(f, &loc);
    }
    // Types flowing between nodes, once the model is well formed enough to infer on.
    if !c.problems.iter().any(|p| p.severity == Severity::Error) {
        c.infer_types();
    }
    c.problems
}

/// Names visible in a graph: its own values and those of the graphs around it.
#[derive(Clone, Default)]
struct Scope {
    names: HashSet<String>,
}

impl Checker<'_> {
    /// Runs type and shape inference (onnx's full check does the same in strict mode): an op
    /// given inputs of types or shapes it cannot take, or an output whose declared type
    /// contradicts what its node computes, is an error at that node.
    fn infer_types(&mut self) {
        let Ok(model) = runnx_ir::convert::model_from_proto(self.loaded) else {
            return;
        };
        let Ok(inference) = runnx_shapes::infer(&model, &runnx_shapes::InferOptions::default())
        else {
            return;
        };
        for problem in inference.problems {
            let runnx_shapes::InferError::Node { node, message } = problem;
            self.problems.push(Problem {
                severity: Severity::Error,
                location: node,
                message: format!("type and shape inference: {message}"),
            });
        }
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    loaded: &'a LoadedModel,
    functions: HashMap<(String, String), &'a proto::FunctionProto>,
    ir_version: i64,
}

fn node_location(n: &proto::NodeProto) -> String {
    let op = match n.domain.as_deref() {
        None | Some("") | Some("ai.onnx") => n.op_type.clone().unwrap_or_default(),
        Some(d) => format!("{d}.{}", n.op_type.as_deref().unwrap_or("")),
    };
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => format!("node '{name}' ({op})"),
        _ => format!(
            "{op} node producing '{}'",
            n.output.first().map(String::as_str).unwrap_or("")
        ),
    }
}

fn canonical(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

impl Checker<'_> {
    fn error(&mut self, location: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Error,
            location: location.to_string(),
            message: message.into(),
        });
    }

    fn warning(&mut self, location: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Warning,
            location: location.to_string(),
            message: message.into(),
        });
    }

    /// IR version and opset imports; returns the imports by canonical domain.
    fn model_header(&mut self, m: &proto::ModelProto) -> BTreeMap<String, i64> {
        let (latest_ir, latest_opset, latest_ml) = schema::latest();
        match m.ir_version {
            None | Some(..=0) => self.error("model", "ir_version is not set"),
            Some(v) if v > latest_ir => self.error(
                "model",
                format!("IR version {v} is newer than any onnx knows (the latest is {latest_ir})"),
            ),
            _ => {}
        }
        let opsets = self.opsets(&m.opset_import, "model");
        if m.opset_import.is_empty() && self.ir_version >= 3 {
            self.error(
                "model",
                "imports no opset (IR version 3 and later need opset_import)",
            );
        }
        for (domain, &version) in &opsets {
            let latest = match domain.as_str() {
                "" => Some(latest_opset),
                "ai.onnx.ml" => Some(latest_ml),
                _ => None,
            };
            if let Some(latest) = latest.filter(|&l| version > l) {
                self.error(
                    "model",
                    format!(
                        "opset {version} of domain '{domain}' does not exist (the latest is {latest})"
                    ),
                );
            }
            // onnx's checker does not enforce this (its own test data has IR 3 models with
            // opset 9), but runtimes may refuse such a model: a warning.
            if let Some(min_ir) = schema::min_ir_for(domain, version) {
                if self.ir_version > 0 && self.ir_version < min_ir {
                    self.warning(
                        "model",
                        format!(
                            "opset {version} of domain '{domain}' came with IR version {min_ir}, \
                             the model declares IR version {}",
                            self.ir_version
                        ),
                    );
                }
            }
        }
        opsets
    }

    fn opsets(
        &mut self,
        imports: &[proto::OperatorSetIdProto],
        loc: &str,
    ) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for o in imports {
            let domain = canonical(o.domain.as_deref().unwrap_or("")).to_string();
            let version = o.version.unwrap_or(0);
            if version < 1 {
                self.error(
                    loc,
                    format!("opset import of domain '{domain}' has version {version}"),
                );
            }
            if out.insert(domain.clone(), version).is_some() {
                self.error(loc, format!("domain '{domain}' is imported twice"));
            }
        }
        out
    }

    /// A value type is well-formed: element types known, dimensions not negative.
    fn value_type(&mut self, t: &proto::TypeProto, loc: &str) {
        let elem = |this: &mut Self, code: Option<i32>| {
            let code = code.unwrap_or(0);
            if DataType::from_onnx(code).is_none() {
                this.error(
                    loc,
                    format!("element type {code} is not a valid tensor element type"),
                );
            }
        };
        let shape = |this: &mut Self, s: &Option<proto::TensorShapeProto>| {
            for d in s.iter().flat_map(|s| &s.dim) {
                if let Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) = d.value {
                    if v < 0 {
                        this.error(loc, format!("dimension {v} is negative"));
                    }
                }
            }
        };
        match &t.value {
            Some(type_proto::Value::TensorType(tt)) => {
                elem(self, tt.elem_type);
                shape(self, &tt.shape);
            }
            Some(type_proto::Value::SparseTensorType(tt)) => {
                elem(self, tt.elem_type);
                shape(self, &tt.shape);
            }
            Some(type_proto::Value::SequenceType(s)) => match &s.elem_type {
                Some(e) => self.value_type(e, loc),
                None => self.error(loc, "sequence type without an element type"),
            },
            Some(type_proto::Value::OptionalType(o)) => match &o.elem_type {
                Some(e) => self.value_type(e, loc),
                None => self.error(loc, "optional type without an element type"),
            },
            Some(type_proto::Value::MapType(m)) => {
                elem(self, m.key_type);
                match &m.value_type {
                    Some(v) => self.value_type(v, loc),
                    None => self.error(loc, "map type without a value type"),
                }
            }
            Some(type_proto::Value::OpaqueType(_)) => {}
            None => self.error(loc, "the type is not set"),
        }
    }

    fn graph(
        &mut self,
        g: &proto::GraphProto,
        opsets: &BTreeMap<String, i64>,
        outer: &Scope,
        main: bool,
        what: &str,
    ) {
        let gname = g.name.clone().unwrap_or_default();
        let gloc = format!("{what} '{gname}'");
        if gname.is_empty() && main {
            self.error(&gloc, "the graph has no name");
        }
        let mut scope = outer.clone();
        // Where each name was defined in this graph, for messages about reassignment.
        let mut defined: HashMap<String, String> = HashMap::new();
        let inputs: HashMap<&str, &proto::ValueInfoProto> = g
            .input
            .iter()
            .map(|i| (i.name.as_deref().unwrap_or(""), i))
            .collect();
        for i in &g.input {
            let name = i.name.clone().unwrap_or_default();
            let loc = format!("input '{name}' of {gloc}");
            if name.is_empty() {
                self.error(&gloc, "an input has no name");
            }
            define(self, &mut defined, &name, "a graph input".into(), &loc);
            match &i.r#type {
                Some(t) => self.value_type(t, &loc),
                None if main => self.error(&loc, "the type is not set"),
                None => {}
            }
        }
        let mut initializer_names = HashSet::new();
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            let loc = format!("initializer '{name}'");
            if name.is_empty() {
                self.error(&gloc, "an initializer has no name");
            }
            initializer_names.insert(name.clone());
            if inputs.contains_key(name.as_str()) {
                // IR < 4 style: also a graph input, whose type must agree.
                defined.remove(&name);
            } else if self.ir_version > 0 && self.ir_version < 4 {
                self.error(
                    &loc,
                    "is not a graph input (before IR version 4, every initializer must be one)",
                );
            }
            define(self, &mut defined, &name, "an initializer".into(), &loc);
            self.initializer(t, &loc, inputs.get(name.as_str()).copied());
        }
        for s in &g.sparse_initializer {
            let name = s
                .values
                .as_ref()
                .and_then(|v| v.name.clone())
                .unwrap_or_default();
            let loc = format!("sparse initializer '{name}'");
            define(
                self,
                &mut defined,
                &name,
                "a sparse initializer".into(),
                &loc,
            );
            let parts = [("values", &s.values), ("indices", &s.indices)];
            let mut lens = Vec::new();
            for (what, t) in parts {
                match t {
                    None => self.error(&loc, format!("has no {what}")),
                    Some(t) => {
                        match runnx_ir::convert::tensor_from_proto_with(t, &self.loaded.external) {
                            Ok(t) => lens.push(t.len()),
                            Err(e) => self.error(&loc, format!("{what}: {e}")),
                        }
                    }
                }
            }
            if let [nnz, indices] = lens[..] {
                let rank = s.dims.len().max(1);
                if indices != nnz && indices != nnz * rank {
                    self.error(
                        &loc,
                        format!("has {nnz} values but {indices} indices for rank {rank}"),
                    );
                }
            }
        }
        scope.names.extend(defined.keys().cloned());

        // Nodes in order: inputs must already be defined; outputs are new names.
        let produced_later: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        for n in &g.node {
            let loc = node_location(n);
            for input in n.input.iter().filter(|i| !i.is_empty()) {
                if !scope.names.contains(input) {
                    if produced_later.contains(input.as_str()) {
                        self.error(
                            &loc,
                            format!(
                                "input '{input}' is used before the node that produces it (nodes \
                                 must be topologically sorted)"
                            ),
                        );
                    } else {
                        self.error(&loc, format!("input '{input}' is not defined"));
                    }
                }
            }
            self.node(n, opsets, &scope, &loc, false);
            for output in n.output.iter().filter(|o| !o.is_empty()) {
                define(self, &mut defined, output, loc.clone(), &loc);
                scope.names.insert(output.clone());
            }
        }
        for o in &g.output {
            let name = o.name.clone().unwrap_or_default();
            let loc = format!("output '{name}' of {gloc}");
            if !scope.names.contains(&name) {
                self.error(&loc, "is not produced by any node, input or initializer");
            }
            match &o.r#type {
                Some(t) => self.value_type(t, &loc),
                None if main => self.error(&loc, "the type is not set"),
                None => {}
            }
        }
        // value_info is advisory (shape inference writes it); what is inconsistent in it is a
        // warning, except a type contradicting an initializer's.
        let mut seen = HashSet::new();
        for v in &g.value_info {
            let name = v.name.clone().unwrap_or_default();
            let loc = format!("value_info '{name}'");
            if !seen.insert(name.clone()) {
                self.warning(&loc, "is declared twice");
            }
            if !scope.names.contains(&name) {
                self.warning(&loc, "names a value the graph does not define");
            }
            if let Some(t) = &v.r#type {
                let errors_before = self.problems.len();
                self.value_type(t, &loc);
                for p in &mut self.problems[errors_before..] {
                    p.severity = Severity::Warning;
                }
                if let Some(init) = g
                    .initializer
                    .iter()
                    .find(|i| i.name.as_deref() == Some(&name))
                {
                    self.type_matches_tensor(t, init, &loc);
                }
            }
        }
    }

    /// An initializer decodes, and agrees with the graph input of the same name.
    fn initializer(
        &mut self,
        t: &proto::TensorProto,
        loc: &str,
        input: Option<&proto::ValueInfoProto>,
    ) {
        if let Err(e) = runnx_ir::convert::tensor_from_proto_with(t, &self.loaded.external) {
            self.error(
                loc,
                format!("its data does not match its declared shape and type: {e}"),
            );
        }
        if let Some(t_in) = input.and_then(|i| i.r#type.as_ref()) {
            self.type_matches_tensor(t_in, t, loc);
        }
    }

    /// A declared type (graph input, value_info) agrees with an initializer's type and shape.
    fn type_matches_tensor(&mut self, ty: &proto::TypeProto, t: &proto::TensorProto, loc: &str) {
        let Some(type_proto::Value::TensorType(tt)) = &ty.value else {
            self.error(loc, "is declared with a non-tensor type but holds a tensor");
            return;
        };
        let declared = tt.elem_type.unwrap_or(0);
        let actual = t.data_type.unwrap_or(0);
        let name = |c: i32| DataType::from_onnx(c).map_or(format!("type {c}"), |d| d.to_string());
        if declared != actual {
            self.error(
                loc,
                format!(
                    "is declared as {} but holds {}",
                    name(declared),
                    name(actual)
                ),
            );
        }
        if let Some(shape) = &tt.shape {
            let fits = shape.dim.len() == t.dims.len()
                && shape.dim.iter().zip(&t.dims).all(|(d, &n)| match d.value {
                    Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) => v == n,
                    _ => true,
                });
            if !fits {
                self.error(
                    loc,
                    format!(
                        "is declared with shape {} but holds a tensor of shape {:?}",
                        crate::text::shape_text(shape),
                        t.dims
                    ),
                );
            }
        }
    }

    fn node(
        &mut self,
        n: &proto::NodeProto,
        opsets: &BTreeMap<String, i64>,
        scope: &Scope,
        loc: &str,
        in_function: bool,
    ) {
        let op = n.op_type.clone().unwrap_or_default();
        let domain = canonical(n.domain.as_deref().unwrap_or("")).to_string();
        if op.is_empty() {
            self.error(loc, "op_type is not set");
            return;
        }
        let mut names = HashSet::new();
        for a in &n.attribute {
            let name = a.name.clone().unwrap_or_default();
            if !names.insert(name.clone()) {
                self.error(loc, format!("attribute '{name}' is given twice"));
            }
            if a.ref_attr_name.is_some() && !in_function {
                self.error(
                    loc,
                    format!("attribute '{name}' refers to a function attribute outside a function"),
                );
            }
        }
        // Subgraphs see every name visible here.
        for a in &n.attribute {
            let name = a.name.clone().unwrap_or_default();
            let what = format!("subgraph '{name}' of {loc}, graph");
            if let Some(g) = &a.g {
                self.graph(g, opsets, scope, false, &what);
            }
            for g in &a.graphs {
                self.graph(g, opsets, scope, false, &what);
            }
        }
        let Some(&version) = opsets.get(&domain) else {
            self.error(
                loc,
                format!("domain '{domain}' is not imported (the model has no opset_import for it)"),
            );
            return;
        };
        if self.functions.contains_key(&(domain.clone(), op.clone())) {
            return; // a model-local function: checked on its own
        }
        let Some(s) = schema::lookup(&domain, &op, version) else {
            let runnx_knows = runnx_ops::registry()
                .lookup(&domain, &op, version)
                .is_some();
            if runnx_knows {
                return; // a contrib op runnx implements; onnx has no schema for it
            }
            let message = match schema::introduced(&domain, &op) {
                Some(first) => format!(
                    "{op} does not exist in opset {version} of domain '{domain}' (it was \
                     introduced in opset {first})"
                ),
                None if runnx_ops::registry().knows(&domain, &op) => {
                    format!("no version of {op} in domain '{domain}' exists at opset {version}")
                }
                None if schema::knows_domain(&domain) => {
                    format!("unknown op {op} in domain '{domain}'")
                }
                None => {
                    // Valid ONNX (custom domains are open), but nothing here can run it.
                    self.warning(
                        loc,
                        format!(
                            "unknown op {op} in domain '{domain}' (neither onnx nor runnx \
                             defines ops in that domain: it needs a custom-op library)"
                        ),
                    );
                    return;
                }
            };
            self.error(loc, message);
            return;
        };
        if s.deprecated {
            self.error(
                loc,
                format!(
                    "{op} is deprecated since opset {} of domain '{domain}'",
                    s.since_version
                ),
            );
        }
        let arity =
            |n: usize, min: usize, max: Option<usize>| n >= min && max.is_none_or(|m| n <= m);
        let range = |min: usize, max: Option<usize>| match max {
            Some(m) if m == min => format!("{min}"),
            Some(m) => format!("{min} to {m}"),
            None => format!("at least {min}"),
        };
        if !arity(n.input.len(), s.min_inputs, s.max_inputs) {
            self.error(
                loc,
                format!(
                    "has {} inputs; {op}-{} takes {}",
                    n.input.len(),
                    s.since_version,
                    range(s.min_inputs, s.max_inputs)
                ),
            );
        }
        if !arity(n.output.len(), s.min_outputs, s.max_outputs) {
            self.error(
                loc,
                format!(
                    "has {} outputs; {op}-{} gives {}",
                    n.output.len(),
                    s.since_version,
                    range(s.min_outputs, s.max_outputs)
                ),
            );
        }
        for a in &n.attribute {
            let name = a.name.as_deref().unwrap_or("");
            let Some(&(_, expected, _)) = s.attributes.iter().find(|(n, _, _)| *n == name) else {
                self.error(
                    loc,
                    format!("{op}-{} has no attribute '{name}'", s.since_version),
                );
                continue;
            };
            let actual = attribute_type(a);
            match actual {
                Some(t) if t.as_str_name() == expected => {}
                Some(t) => self.error(
                    loc,
                    format!(
                        "attribute '{name}' is {} but {op} expects {}",
                        t.as_str_name(),
                        expected
                    ),
                ),
                None => self.error(loc, format!("attribute '{name}' has no type and no value")),
            }
        }
        for (name, _, required) in &s.attributes {
            if *required && !names.contains(*name) {
                self.error(loc, format!("required attribute '{name}' is missing"));
            }
        }
        if !runnx_ops::registry().knows(&domain, &op) {
            self.warning(loc, format!("runnx has no kernel for {op} yet"));
        }
    }

    fn function(&mut self, f: &proto::FunctionProto, loc: &str) {
        let opsets = self.opsets(&f.opset_import, loc);
        let mut scope = Scope::default();
        for i in &f.input {
            if !scope.names.insert(i.clone()) {
                self.error(loc, format!("input '{i}' is declared twice"));
            }
        }
        for n in &f.node {
            let nloc = format!("{} in {loc}", node_location(n));
            for input in n.input.iter().filter(|i| !i.is_empty()) {
                if !scope.names.contains(input) {
                    self.error(&nloc, format!("input '{input}' is not defined before use"));
                }
            }
            self.node(n, &opsets, &scope, &nloc, true);
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if !scope.names.insert(o.clone()) {
                    self.error(&nloc, format!("'{o}' is assigned twice"));
                }
            }
        }
        for o in &f.output {
            if !scope.names.contains(o) {
                self.error(loc, format!("output '{o}' is not produced by any node"));
            }
        }
    }
}

/// Records that `by` defines `name` in this graph; a second definition is an error.
fn define(
    c: &mut Checker<'_>,
    defined: &mut HashMap<String, String>,
    name: &str,
    by: String,
    loc: &str,
) {
    if let Some(first) = defined.get(name) {
        c.error(
            loc,
            format!("'{name}' is assigned twice: by {first} and by {by}"),
        );
    } else {
        defined.insert(name.to_string(), by);
    }
}

/// The attribute's declared type, or the one its value implies (files before IR 2 omit it).
fn attribute_type(a: &proto::AttributeProto) -> Option<AttributeType> {
    match a.r#type.and_then(|t| AttributeType::try_from(t).ok()) {
        Some(AttributeType::Undefined) | None => {}
        Some(t) => return Some(t),
    }
    Some(if a.f.is_some() {
        AttributeType::Float
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if a.sparse_tensor.is_some() {
        AttributeType::SparseTensor
    } else if a.tp.is_some() {
        AttributeType::TypeProto
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if !a.tensors.is_empty() {
        AttributeType::Tensors
    } else if !a.graphs.is_empty() {
        AttributeType::Graphs
    } else if !a.sparse_tensors.is_empty() {
        AttributeType::SparseTensors
    } else if !a.type_protos.is_empty() {
        AttributeType::TypeProtos
    } else {
        return None;
    })
}
