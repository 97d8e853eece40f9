use runnx_ir::IrError;

/// Why an op could not be built or run. The runtime adds which node and model it happened in.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("attribute '{name}': {message}")]
    Attribute { name: String, message: String },
    #[error("input {index}: {message}")]
    Input { index: usize, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ir(#[from] IrError),
}

impl OpError {
    pub fn invalid(message: impl Into<String>) -> OpError {
        OpError::Invalid(message.into())
    }
    pub fn unsupported(message: impl Into<String>) -> OpError {
        OpError::Unsupported(message.into())
    }
    pub fn input(index: usize, message: impl Into<String>) -> OpError {
        OpError::Input {
            index,
            message: message.into(),
        }
    }
    pub fn attribute(name: &str, message: impl Into<String>) -> OpError {
        OpError::Attribute {
            name: name.to_string(),
            message: message.into(),
        }
    }
}
