//! Runtime values: what flows along graph edges.

use crate::tensor::Tensor;
use crate::types::ValueType;

/// A value computed or fed at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    /// An ordered list of values of one type (`elem_type` matters when it is empty).
    Sequence {
        elem_type: ValueType,
        items: Vec<Value>,
    },
    /// An optional value: `None` is the empty optional.
    Optional {
        elem_type: ValueType,
        value: Option<Box<Value>>,
    },
    /// A map, stored as a tensor of keys and a value per key (sequence of values or a tensor).
    Map {
        keys: Tensor,
        values: Box<Value>,
    },
}

impl Value {
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// A short description for error messages: `float[1,3,224,224]`, `sequence of 3`.
    pub fn describe(&self) -> String {
        match self {
            Value::Tensor(t) => format!("{}{:?}", t.dtype(), t.shape()),
            Value::Sequence { items, .. } => format!("sequence of {}", items.len()),
            Value::Optional { value: None, .. } => "empty optional".to_string(),
            Value::Optional { value: Some(v), .. } => format!("optional {}", v.describe()),
            Value::Map { keys, .. } => format!("map of {} {} keys", keys.len(), keys.dtype()),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}
