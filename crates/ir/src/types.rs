//! Static types of graph values: tensor element types with (possibly symbolic) shapes,
//! sequences, optionals and maps.

use std::fmt;

use crate::dtype::DataType;

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    /// A named dimension (`batch`, `sequence`): equal names are equal sizes.
    Symbol(String),
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: DataType,
    /// `None` when the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

/// The type of a graph value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueType {
    Tensor(TensorType),
    SparseTensor(TensorType),
    Sequence(Box<ValueType>),
    Optional(Box<ValueType>),
    Map(DataType, Box<ValueType>),
    /// A value whose type the model does not declare.
    Unknown,
}

impl ValueType {
    pub fn tensor(dtype: DataType, shape: Option<Vec<Dim>>) -> ValueType {
        ValueType::Tensor(TensorType { dtype, shape })
    }

    /// onnxruntime's type string: `tensor(float)`, `seq(tensor(int64))`, `map(string,tensor(float))`.
    pub fn type_string(&self) -> String {
        match self {
            ValueType::Tensor(t) => format!("tensor({})", t.dtype.name()),
            ValueType::SparseTensor(t) => format!("sparse_tensor({})", t.dtype.name()),
            ValueType::Sequence(e) => format!("seq({})", e.type_string()),
            ValueType::Optional(e) => format!("optional({})", e.type_string()),
            ValueType::Map(k, v) => format!("map({},{})", k.name(), v.type_string()),
            ValueType::Unknown => "unknown".to_string(),
        }
    }

    pub fn as_tensor(&self) -> Option<&TensorType> {
        match self {
            ValueType::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Tensor(t) => {
                write!(f, "{}", t.dtype)?;
                match &t.shape {
                    Some(dims) => {
                        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                        write!(f, "[{}]", dims.join(","))
                    }
                    None => f.write_str("[...]"),
                }
            }
            other => f.write_str(&other.type_string()),
        }
    }
}
