//! What an op's inference rule sees: its node, the types and known values of its inputs, and
//! where to put what it infers about its outputs.

use runnx_ir::{AttributeValue, DataType, Dim, Graph, Node, Tensor, TensorType, ValueType};

use crate::engine::{Engine, Scope};
use crate::value::{self, SymInt, SymValue};

/// Why a rule inferred nothing (more).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// Something the rule needs (an input's type or rank, a constant) is not known: not an
    /// error, the outputs stay as far as the rule got.
    Unknown,
    /// The node is invalid: wrong types, shapes that cannot combine, bad attributes.
    Invalid(String),
}

impl RuleError {
    pub fn invalid(message: impl Into<String>) -> RuleError {
        RuleError::Invalid(message.into())
    }
}

pub type RuleResult<T = ()> = Result<T, RuleError>;

/// Returns `Err(RuleError::Invalid(format!(...)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::context::RuleError::Invalid(format!($($arg)*)))
    };
}

/// One node's view during inference.
pub struct NodeContext<'s> {
    pub(crate) engine: &'s Engine<'s>,
    pub(crate) scope: &'s Scope<'s>,
    pub(crate) node: &'s Node,
    pub(crate) opset: i64,
    pub(crate) inputs: Vec<Option<ValueType>>,
    pub(crate) input_values: Vec<Option<SymValue>>,
    pub(crate) input_consts: Vec<Option<&'s Tensor>>,
    pub(crate) outputs: Vec<Option<ValueType>>,
    pub(crate) output_values: Vec<Option<SymValue>>,
}

impl<'s> NodeContext<'s> {
    pub fn node(&self) -> &Node {
        self.node
    }

    pub fn op_type(&self) -> &str {
        &self.node.op_type
    }

    /// The opset version of the node's domain.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Inputs listed on the node, including missing optional ones in between.
    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    /// Whether optional input `i` is given.
    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(|n| !n.is_empty())
    }

    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    pub fn has_output(&self, i: usize) -> bool {
        self.node.outputs.get(i).is_some_and(|n| !n.is_empty())
    }

    /// Input `i`'s type; `Unknown` when the input is missing or its type is not known.
    pub fn input_type(&self, i: usize) -> RuleResult<&ValueType> {
        match self.inputs.get(i) {
            Some(Some(ValueType::Unknown)) | Some(None) | None => Err(RuleError::Unknown),
            Some(Some(t)) => Ok(t),
        }
    }

    /// Input `i` as a tensor type; invalid when it is a sequence, map or optional.
    pub fn input_tensor(&self, i: usize) -> RuleResult<&TensorType> {
        match self.input_type(i)? {
            ValueType::Tensor(t) => Ok(t),
            other => Err(RuleError::invalid(format!(
                "input {i} ('{}') must be a tensor, it is {}",
                self.node.inputs[i],
                other.type_string()
            ))),
        }
    }

    pub fn input_dtype(&self, i: usize) -> RuleResult<DataType> {
        Ok(self.input_tensor(i)?.dtype)
    }

    /// Input `i`'s shape; `Unknown` when its rank is not known.
    pub fn input_shape(&self, i: usize) -> RuleResult<&[Dim]> {
        self.input_tensor(i)?
            .shape
            .as_deref()
            .ok_or(RuleError::Unknown)
    }

    pub fn input_rank(&self, i: usize) -> RuleResult<usize> {
        Ok(self.input_shape(i)?.len())
    }

    /// Input `i`'s data when it is a constant (an initializer that is not a graph input, or a
    /// Constant node's output).
    pub fn input_const(&self, i: usize) -> Option<&Tensor> {
        self.input_consts.get(i).copied().flatten()
    }

    /// What is known about input `i`'s contents when it is a small integer tensor.
    pub fn input_value(&self, i: usize) -> Option<&SymValue> {
        self.input_values.get(i).and_then(Option::as_ref)
    }

    /// Input `i`'s contents as integers when all are known (constants, or computed shapes).
    pub fn input_ints(&self, i: usize) -> Option<Vec<i64>> {
        if let Some(v) = self.input_value(i) {
            if let Some(k) = v.known() {
                return Some(k);
            }
        }
        self.input_const(i).and_then(|t| t.to_i64_vec().ok())
    }

    /// Input `i`'s contents element by element: a propagated value or an integer constant.
    pub fn input_syms(&self, i: usize) -> Option<Vec<SymInt>> {
        if let Some(v) = self.input_value(i) {
            return Some(v.elems.clone());
        }
        let ints = self.input_const(i)?.to_i64_vec().ok()?;
        Some(ints.into_iter().map(SymInt::Known).collect())
    }

    /// Input `i`'s one element (a scalar or a one-element vector) when its contents are known.
    pub fn input_scalar(&self, i: usize) -> Option<SymInt> {
        self.input_syms(i)
            .filter(|v| v.len() == 1)
            .map(|v| v[0].clone())
    }

    /// Input `i`'s one element as a size (unknown when it is not known or negative).
    pub fn input_scalar_dim(&self, i: usize) -> Dim {
        self.input_scalar(i).map_or(Dim::Unknown, |s| s.to_dim())
    }

    /// The length of input `i` when it is a 1-D tensor of fixed length.
    pub fn input_fixed_len(&self, i: usize) -> Option<usize> {
        match self.input_shape(i).ok()? {
            [Dim::Fixed(n)] => Some(*n),
            _ => None,
        }
    }

    /// Input `i`'s contents as f64 when it is a constant of a numeric type.
    pub fn input_floats(&self, i: usize) -> Option<Vec<f64>> {
        use runnx_ir::TensorData;
        let t = self.input_const(i)?;
        Some(match t.data() {
            TensorData::Float(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Double(v) => v.clone(),
            TensorData::Float16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::Bfloat16(v) => v.iter().map(|x| x.to_f64()).collect(),
            _ => t.to_i64_vec().ok()?.into_iter().map(|x| x as f64).collect(),
        })
    }

    pub fn attr(&self, name: &str) -> Option<&AttributeValue> {
        self.node.attribute(name).map(|a| &a.value)
    }

    pub fn attr_int(&self, name: &str) -> RuleResult<Option<i64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(self.wrong_attr(name, "int", other)),
        }
    }

    pub fn attr_int_or(&self, name: &str, default: i64) -> RuleResult<i64> {
        Ok(self.attr_int(name)?.unwrap_or(default))
    }

    pub fn attr_ints(&self, name: &str) -> RuleResult<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(self.wrong_attr(name, "ints", other)),
        }
    }

    pub fn attr_float_or(&self, name: &str, default: f32) -> RuleResult<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(AttributeValue::Float(v)) => Ok(*v),
            Some(other) => Err(self.wrong_attr(name, "float", other)),
        }
    }

    pub fn attr_floats(&self, name: &str) -> RuleResult<Option<Vec<f32>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Floats(v)) => Ok(Some(v.clone())),
            Some(other) => Err(self.wrong_attr(name, "floats", other)),
        }
    }

    pub fn attr_string(&self, name: &str) -> RuleResult<Option<String>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::String(v)) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            Some(other) => Err(self.wrong_attr(name, "string", other)),
        }
    }

    pub fn attr_tensor(&self, name: &str) -> RuleResult<Option<&Tensor>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong_attr(name, "tensor", other)),
        }
    }

    pub fn attr_graph(&self, name: &str) -> RuleResult<Option<&Graph>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttributeValue::Graph(g)) => Ok(Some(g)),
            Some(other) => Err(self.wrong_attr(name, "graph", other)),
        }
    }

    /// A list that is attribute `name` before opset `since` and input `input` from then on:
    /// `Ok(None)` when not given, `Unknown` when given as an input whose contents are not known.
    pub fn attr_or_input_ints(
        &self,
        name: &str,
        input: usize,
        since: i64,
    ) -> RuleResult<Option<Vec<i64>>> {
        if self.opset() < since {
            return self.attr_ints(name);
        }
        if !self.has_input(input) {
            return Ok(None);
        }
        self.input_ints(input).map(Some).ok_or(RuleError::Unknown)
    }

    /// An element type given as an attribute (`to`, `dtype`): its ONNX code decoded.
    pub fn attr_dtype(&self, name: &str) -> RuleResult<Option<DataType>> {
        match self.attr_int(name)? {
            None => Ok(None),
            Some(code) => DataType::from_onnx(code as i32).map(Some).ok_or_else(|| {
                RuleError::invalid(format!("attribute '{name}': unknown element type {code}"))
            }),
        }
    }

    fn wrong_attr(&self, name: &str, expected: &str, got: &AttributeValue) -> RuleError {
        RuleError::invalid(format!(
            "attribute '{name}' must be {expected}, it is {}",
            got.kind()
        ))
    }

    /// Sets output `i`'s type (ignored when the node has no such output).
    pub fn set_output(&mut self, i: usize, ty: ValueType) {
        if let Some(slot) = self.outputs.get_mut(i) {
            *slot = Some(ty);
        }
    }

    pub fn set_output_tensor(&mut self, i: usize, dtype: DataType, shape: Option<Vec<Dim>>) {
        self.set_output(i, ValueType::tensor(dtype, shape));
    }

    /// Records output `i`'s contents (for integer tensors of rank 0 or 1).
    pub fn set_output_value(&mut self, i: usize, value: SymValue) {
        if let Some(slot) = self.output_values.get_mut(i) {
            *slot = Some(value);
        }
    }

    /// Sets output 0's value by folding `f` over the inputs' values, element by element (a
    /// one-element value repeats); nothing when some input's value is not known.
    pub fn propagate_values(&mut self, inputs: &[usize], f: fn(&SymInt, &SymInt) -> SymInt) {
        let values: Option<Vec<&SymValue>> = inputs.iter().map(|&i| self.input_value(i)).collect();
        let Some(z) = values.and_then(|v| value::zip(&v)) else {
            return;
        };
        let elems = z
            .rows
            .iter()
            .map(|r| r[1..].iter().fold(r[0].clone(), |acc, x| f(&acc, x)))
            .collect();
        self.set_output_value(
            0,
            SymValue {
                elems,
                scalar: z.scalar,
            },
        );
    }

    /// Infers a subgraph (If branches, Loop and Scan bodies) whose inputs have the given types;
    /// it sees this node's scope. Returns its outputs' types.
    pub fn infer_graph(
        &self,
        graph: &Graph,
        input_types: &[Option<ValueType>],
    ) -> RuleResult<Vec<Option<ValueType>>> {
        self.engine.infer_subgraph(self.scope, graph, input_types)
    }
}
