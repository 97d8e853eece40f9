//! Model tooling: what people do with an exported model besides running it.
//!
//! Each module is one tool and a library call the CLI (`runnx weights ...`, `runnx print` ...) and
//! the Python module wrap: [`weights`] reads and writes named tensors (`.npz`, `.safetensors`,
//! PyTorch `torch.save` archives) and diffs or patches a model's initializers against them;
//! [`text`] prints and parses models as the ONNX textual syntax, protobuf text and JSON;
//! [`compare`] compares outputs and finds the first diverging node; [`check`] validates a model
//! like onnx's checker; [`shapes`] writes inferred shapes into a model (the inference itself is
//! the `runnx-shapes` crate).
//!
//! This crate works on the IR (`runnx-ir`) and the runtime; it knows nothing about the CLI.

pub mod check;
pub mod compare;
pub mod numeric;
pub mod shapes;
pub mod text;
pub mod weights;

use std::path::PathBuf;

/// Errors of the tools: each names the file or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Ir(#[from] runnx_ir::IrError),
    #[error(transparent)]
    Format(#[from] runnx_onnx::FormatError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    InFile { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl ToolError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ToolError + '_ {
        move |source| ToolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn in_file(path: &std::path::Path, message: impl std::fmt::Display) -> ToolError {
        ToolError::InFile {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}
