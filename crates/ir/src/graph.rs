//! The graph IR: a model as the runtime and the tools see it, built from the protobuf once.
//!
//! Names are kept as in the file (value names link nodes); attribute values are decoded into
//! typed Rust values and tensors into [`Tensor`]s, so nothing downstream touches protobuf.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::tensor::Tensor;
use crate::types::ValueType;

/// A whole model: metadata, opset imports, the main graph and model-local functions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    /// Domain ("" is the default ONNX domain) to opset version.
    pub opset_imports: BTreeMap<String, i64>,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
    pub graph: Graph,
    pub functions: Vec<Arc<Function>>,
}

impl Model {
    /// The opset version the model imports for `domain` ("" and "ai.onnx" are the same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let domain = canonical_domain(domain);
        self.opset_imports
            .iter()
            .find(|(d, _)| canonical_domain(d) == domain)
            .map(|(_, v)| *v)
    }
}

/// "ai.onnx" is another name for the default domain "".
pub fn canonical_domain(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub doc_string: String,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub value_info: Vec<ValueInfo>,
    /// Initializers in file order (sparse initializers already made dense).
    pub initializers: Vec<(String, Tensor)>,
    pub nodes: Vec<Node>,
}

impl Graph {
    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.initializers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// Graph inputs that are not initializers: what a user must feed. (Before IR 4, every
    /// initializer was also listed as an input.)
    pub fn feed_inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.inputs
            .iter()
            .filter(move |i| self.initializer(&i.name).is_none())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub ty: ValueType,
    pub doc_string: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Input value names; an empty name is a missing optional input.
    pub inputs: Vec<String>,
    /// Output value names; an empty name is an unused optional output.
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub doc_string: String,
}

impl Node {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// `name (OpType)` or `OpType` for unnamed nodes: how errors refer to a node.
    pub fn describe(&self) -> String {
        let op = if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{}.{}", self.domain, self.op_type)
        };
        if self.name.is_empty() {
            format!(
                "{op} node producing '{}'",
                self.outputs.first().map(String::as_str).unwrap_or("")
            )
        } else {
            format!("node '{}' ({op})", self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
    /// Inside a function body: the attribute of the calling node this one takes its value from.
    pub ref_attr_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Arc<Graph>),
    SparseTensor(SparseTensor),
    Type(ValueType),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Arc<Graph>>),
    SparseTensors(Vec<SparseTensor>),
    Types(Vec<ValueType>),
}

impl AttributeValue {
    /// The ONNX name of the attribute's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttributeValue::Float(_) => "float",
            AttributeValue::Int(_) => "int",
            AttributeValue::String(_) => "string",
            AttributeValue::Tensor(_) => "tensor",
            AttributeValue::Graph(_) => "graph",
            AttributeValue::SparseTensor(_) => "sparse_tensor",
            AttributeValue::Type(_) => "type_proto",
            AttributeValue::Floats(_) => "floats",
            AttributeValue::Ints(_) => "ints",
            AttributeValue::Strings(_) => "strings",
            AttributeValue::Tensors(_) => "tensors",
            AttributeValue::Graphs(_) => "graphs",
            AttributeValue::SparseTensors(_) => "sparse_tensors",
            AttributeValue::Types(_) => "type_protos",
        }
    }
}

/// A sparse tensor in COO form: `values[i]` sits at `indices[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Tensor,
    /// Either `[nnz, rank]` coordinates or `[nnz]` linear indices.
    pub indices: Tensor,
}

/// A model-local function (FunctionProto): a named sub-graph called like an op.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Function {
    pub name: String,
    pub domain: String,
    pub overload: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Attribute names the body may reference, without defaults.
    pub attributes: Vec<String>,
    /// Attributes with default values.
    pub attribute_defaults: Vec<Attribute>,
    pub nodes: Vec<Node>,
    pub opset_imports: BTreeMap<String, i64>,
    pub value_info: Vec<ValueInfo>,
    pub doc_string: String,
}
