use runnx_ir::IrError;
use runnx_ops::OpError;

/// Errors creating or running a session. Messages name the node, op or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Format(#[from] runnx_onnx::FormatError),
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("{node}: {source}")]
    Node {
        node: String,
        #[source]
        source: OpError,
    },
    #[error("{0}")]
    Model(String),
    #[error("{0}")]
    Input(String),
}

impl RuntimeError {
    pub(crate) fn node(node: &str, source: OpError) -> RuntimeError {
        RuntimeError::Node {
            node: node.to_string(),
            source,
        }
    }
}
