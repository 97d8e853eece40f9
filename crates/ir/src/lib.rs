//! The in-memory model: element types, tensors, value types and the graph IR.
//!
//! Everything here is plain data. The IR is built from `runnx-onnx` protobuf messages once at
//! load time; operators, the runtime and the tools work on it and never on protobuf. This crate
//! knows nothing about how values are computed.

pub mod convert;
pub mod dtype;
pub mod graph;
pub mod npy;
pub mod scalar;
pub mod tensor;
pub mod types;
pub mod value;

pub use dtype::DataType;
pub use graph::{Attribute, AttributeValue, Function, Graph, Model, Node, SparseTensor, ValueInfo};
pub use tensor::{shape_len, strides_of, Element, Shape, Tensor, TensorData};
pub use types::{Dim, TensorType, ValueType};
pub use value::Value;

/// Errors building or using the IR.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error(transparent)]
    Format(#[from] runnx_onnx::FormatError),
    #[error("unknown tensor element type code {0}")]
    UnknownDataType(i32),
    #[error("{len} elements do not fill shape {shape:?}")]
    ShapeMismatch { shape: Vec<usize>, len: usize },
    #[error("expected a tensor of {expected}, got {actual}")]
    WrongType {
        expected: DataType,
        actual: DataType,
    },
    #[error("tensor '{name}': {source}")]
    InTensor {
        name: String,
        #[source]
        source: Box<IrError>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl IrError {
    pub(crate) fn in_tensor(self, name: &str) -> IrError {
        IrError::InTensor {
            name: name.to_string(),
            source: Box::new(self),
        }
    }
}

/// Loads a model file and builds its IR.
pub fn load_model(path: &std::path::Path) -> Result<Model, IrError> {
    let loaded = runnx_onnx::load_model(path)?;
    convert::model_from_proto(&loaded)
}
