use std::sync::Arc;

use runnx_ir::{AttributeValue, DataType, Element, Graph, Node, Tensor, Value, ValueType};

use crate::OpError;

/// A subgraph (If branch, Loop body...) compiled by the runtime.
pub trait Subgraph: Send + Sync {
    /// Runs the body: `inputs` are the graph's formal inputs in order, `captured` the values of
    /// [`Subgraph::captured_names`] in order. Returns the graph outputs in order.
    fn run(&self, inputs: Vec<Value>, captured: &[Value]) -> Result<Vec<Value>, OpError>;
    /// Outer-scope value names the body reads. The runtime feeds them to the node as implicit
    /// inputs after its declared ones.
    fn captured_names(&self) -> &[String];
}

/// The implicit inputs of a node whose subgraphs are `subgraphs` (in the order they were
/// compiled): the union of their captured names, first occurrence first. The runtime appends
/// the values of these names, in this order, after the node's declared inputs.
pub fn implicit_input_names(subgraphs: &[Arc<dyn Subgraph>]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for sub in subgraphs {
        for name in sub.captured_names() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// For one subgraph: the position in `implicit` (see [`implicit_input_names`]) of each of its
/// captured names, so a kernel can hand it exactly the values it captures.
pub fn captured_positions(implicit: &[String], subgraph: &dyn Subgraph) -> Vec<usize> {
    subgraph
        .captured_names()
        .iter()
        .map(|n| {
            implicit
                .iter()
                .position(|m| m == n)
                .expect("implicit names include every captured name")
        })
        .collect()
}

/// Compiles subgraph attributes while a node is built; implemented by the runtime.
pub trait SubgraphCompiler {
    fn compile(&self, graph: &Arc<Graph>) -> Result<Arc<dyn Subgraph>, OpError>;
}

/// What `build` sees of a node.
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    /// The opset version the model imports for the node's domain.
    pub opset: i64,
    /// Inputs whose value is known when the session is built (initializers and folded
    /// constants), by input position.
    pub constants: Vec<Option<&'a Tensor>>,
    /// Declared or inferred input types, by input position, where known.
    pub input_types: Vec<Option<&'a ValueType>>,
    pub subgraphs: &'a dyn SubgraphCompiler,
}

impl<'a> NodeInfo<'a> {
    fn attr(&self, name: &str) -> Option<&'a AttributeValue> {
        self.node.attribute(name).map(|a| &a.value)
    }

    fn wrong_kind(name: &str, expected: &str, got: &AttributeValue) -> OpError {
        OpError::attribute(name, format!("expected {expected}, got {}", got.kind()))
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.node.attribute(name).is_some()
    }

    pub fn attr_int_opt(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(Self::wrong_kind(name, "int", other)),
        }
    }

    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        Ok(self.attr_int_opt(name)?.unwrap_or(default))
    }

    pub fn attr_float_opt(&self, name: &str) -> Result<Option<f32>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Float(v)) => Ok(Some(*v)),
            // Some exporters write integral floats as ints.
            Some(AttributeValue::Int(v)) => Ok(Some(*v as f32)),
            Some(other) => Err(Self::wrong_kind(name, "float", other)),
        }
    }

    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        Ok(self.attr_float_opt(name)?.unwrap_or(default))
    }

    pub fn attr_string_opt(&self, name: &str) -> Result<Option<String>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::String(v)) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            Some(other) => Err(Self::wrong_kind(name, "string", other)),
        }
    }

    pub fn attr_string(&self, name: &str, default: &str) -> Result<String, OpError> {
        Ok(self
            .attr_string_opt(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    pub fn attr_ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttributeValue::Int(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(Self::wrong_kind(name, "ints", other)),
        }
    }

    pub fn attr_floats_opt(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Floats(v)) => Ok(Some(v.clone())),
            Some(AttributeValue::Float(v)) => Ok(Some(vec![*v])),
            Some(other) => Err(Self::wrong_kind(name, "floats", other)),
        }
    }

    pub fn attr_strings_opt(&self, name: &str) -> Result<Option<Vec<String>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Strings(v)) => Ok(Some(
                v.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )),
            Some(other) => Err(Self::wrong_kind(name, "strings", other)),
        }
    }

    pub fn attr_tensor_opt(&self, name: &str) -> Result<Option<&'a Tensor>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(Self::wrong_kind(name, "tensor", other)),
        }
    }

    pub fn attr_graph(&self, name: &str) -> Result<&'a Arc<Graph>, OpError> {
        match self.attr(name) {
            None => Err(OpError::attribute(name, "is required")),
            Some(AttributeValue::Graph(g)) => Ok(g),
            Some(other) => Err(Self::wrong_kind(name, "graph", other)),
        }
    }

    /// The value of any attribute, for ops (Constant) that accept several kinds.
    pub fn attr_value(&self, name: &str) -> Option<&'a AttributeValue> {
        self.attr(name)
    }

    /// Number of inputs the node names (including empty names for skipped optional inputs).
    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    /// Whether optional input `index` is present.
    pub fn has_input(&self, index: usize) -> bool {
        self.node.inputs.get(index).is_some_and(|n| !n.is_empty())
    }

    /// The build-time constant at input `index`, if there is one.
    pub fn constant(&self, index: usize) -> Option<&'a Tensor> {
        self.constants.get(index).copied().flatten()
    }

    /// The declared element type of input `index`, if known.
    pub fn input_dtype(&self, index: usize) -> Option<DataType> {
        self.input_types
            .get(index)
            .copied()
            .flatten()
            .and_then(|t| t.as_tensor())
            .map(|t| t.dtype)
    }
}

/// The values a kernel runs on, by input position; absent optional inputs are `None`.
/// Implicit inputs (outer-scope values captured by subgraphs) follow the declared ones.
pub struct Inputs {
    values: Vec<Option<Value>>,
}

impl Inputs {
    pub fn new(values: Vec<Option<Value>>) -> Inputs {
        Inputs { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn has(&self, index: usize) -> bool {
        matches!(self.values.get(index), Some(Some(_)))
    }

    pub fn value(&self, index: usize) -> Result<&Value, OpError> {
        self.values
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| OpError::input(index, "is required but missing"))
    }

    pub fn opt_value(&self, index: usize) -> Option<&Value> {
        self.values.get(index).and_then(Option::as_ref)
    }

    pub fn tensor(&self, index: usize) -> Result<&Tensor, OpError> {
        match self.value(index)? {
            Value::Tensor(t) => Ok(t),
            other => Err(OpError::input(
                index,
                format!("expected a tensor, got {}", other.describe()),
            )),
        }
    }

    pub fn opt_tensor(&self, index: usize) -> Result<Option<&Tensor>, OpError> {
        if self.has(index) {
            self.tensor(index).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Moves the tensor out, so the kernel may reuse its buffer when it holds the last reference.
    pub fn take_tensor(&mut self, index: usize) -> Result<Tensor, OpError> {
        match self.values.get_mut(index).and_then(Option::take) {
            Some(Value::Tensor(t)) => Ok(t),
            Some(other) => Err(OpError::input(
                index,
                format!("expected a tensor, got {}", other.describe()),
            )),
            None => Err(OpError::input(index, "is required but missing")),
        }
    }

    pub fn take_value(&mut self, index: usize) -> Option<Value> {
        self.values.get_mut(index).and_then(Option::take)
    }

    /// The elements of input `index` as `T`, with an error naming the input when the type differs.
    pub fn slice<T: Element>(&self, index: usize) -> Result<&[T], OpError> {
        let t = self.tensor(index)?;
        t.as_slice::<T>()
            .map_err(|_| OpError::input(index, format!("expected {}, got {}", T::DTYPE, t.dtype())))
    }

    /// All values from `start` on (variadic inputs such as Concat's, or implicit inputs).
    pub fn rest(&self, start: usize) -> impl Iterator<Item = Option<&Value>> {
        self.values.iter().skip(start).map(Option::as_ref)
    }

    pub fn into_values(mut self) -> Vec<Option<Value>> {
        std::mem::take(&mut self.values)
    }
}

/// The inputs a kernel did not take are dropped here, after it ran: the activations whose last
/// use this was hand their buffers to the next allocations ([`crate::kernels::buffers`]).
impl Drop for Inputs {
    fn drop(&mut self) {
        for value in self.values.drain(..).flatten() {
            if let Value::Tensor(t) = value {
                if t.dtype() == runnx_ir::DataType::Float {
                    if let Some(v) = t.into_unique_vec::<f32>() {
                        crate::kernels::buffers::recycle(v);
                    }
                }
            }
        }
    }
}
