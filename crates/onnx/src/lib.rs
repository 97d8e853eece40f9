//! The ONNX file format: protobuf messages, loading and saving.
//!
//! This crate owns bytes on disk and the protobuf messages they decode to. It knows nothing about
//! tensors as arrays, graphs as executable programs or operators: `runnx-ir` builds those from the
//! messages here.
//!
//! Loading is zero-copy: the file is memory-mapped and every `bytes` field of the decoded messages
//! (tensor `raw_data` above all) is a view into that mapping. External data is resolved relative
//! to the model's folder and may never leave it.

mod external;
mod load;

pub mod proto {
    //! Generated from `proto/onnx.proto` (onnx-ml, the current IR) by `tools/protogen`.
    #![allow(clippy::all, missing_docs, rustdoc::all)]
    include!("proto/onnx.rs");
}

/// The `FileDescriptorSet` of `proto/onnx.proto` (written by `tools/protogen`): lets tools
/// reflect over the messages (protobuf text format, JSON) without a protobuf compiler.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("proto/onnx.desc");

pub use external::{ExternalData, ExternalDataResolver};
pub use load::{decode_model, load_model, save_model, LoadedModel};

use std::path::PathBuf;

/// Errors reading or writing ONNX files.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not a valid ONNX model: {message}")]
    Decode { what: String, message: String },
    #[error("tensor '{tensor}': external data {message}")]
    ExternalData { tensor: String, message: String },
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
