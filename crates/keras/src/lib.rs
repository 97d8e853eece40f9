//! Keras to ONNX, without TensorFlow.
//!
//! Reads a Keras model saved as legacy HDF5 (`.h5`, Keras 2 tf.keras or Keras 3) or as a Keras 3
//! `.keras` zip and builds an ONNX `ModelProto` computing the same function at inference:
//! Sequential and Functional models (several inputs and outputs, shared layers, nested models)
//! over the layers listed in [`SUPPORTED_LAYERS`].
//!
//! The graph keeps Keras's channels-last layout and names at its inputs and outputs, with a
//! dynamic batch dimension; inside, convolutions run channels-first and Transposes appear only
//! where a layer needs the other layout (see `builder`). An unsupported layer or setting is an
//! error naming the layer, its class and the setting.
//!
//! This crate owns the Keras file formats and the layer-to-operator mapping. It knows nothing
//! about running models: it produces protobuf messages for `runnx-onnx` to save.

mod activations;
mod archive;
mod array;
mod attention;
mod builder;
mod layers;
mod model;
mod recurrent;

use std::path::Path;

use prost::Message;
use runnx_onnx::proto::ModelProto;

pub use archive::{KerasFile, KerasMajor};

/// The opset written when none is asked for: every op emitted has a runnx kernel at it.
pub const DEFAULT_OPSET: i64 = 17;
/// The opsets `--opset` accepts.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Every Keras layer class the converter understands.
pub const SUPPORTED_LAYERS: &[&str] = layers::SUPPORTED;

/// Conversion settings.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The ONNX opset of the default domain; [`DEFAULT_OPSET`] when `None`.
    pub opset: Option<i64>,
    /// Model inputs to declare channels-first (NCHW) instead of Keras's channels-last.
    pub inputs_as_nchw: Vec<String>,
}

/// Errors reading or converting a Keras model.
#[derive(Debug, thiserror::Error)]
pub enum KerasError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("layer '{layer}' ({class}): {message}")]
    Layer {
        layer: String,
        class: String,
        message: String,
    },
    #[error("model config: {0}")]
    Config(String),
    #[error("opset {0} is not supported: choose one of {start}..={end}", start = OPSETS.start(), end = OPSETS.end())]
    Opset(i64),
    #[error("--inputs-as-nchw {name}: {message}")]
    InputsAsNchw { name: String, message: String },
}

/// Converts the Keras model in `path` (`.h5` or `.keras`).
pub fn convert_file(path: &Path, options: &Options) -> Result<ModelProto, KerasError> {
    let file = KerasFile::open(path)?;
    convert(&file, options)
}

/// Converts a Keras model from the bytes of a `.h5` or `.keras` file.
pub fn convert_bytes(bytes: Vec<u8>, options: &Options) -> Result<ModelProto, KerasError> {
    let file = KerasFile::from_bytes(bytes, "<bytes>")?;
    convert(&file, options)
}

/// Converts an opened Keras file.
pub fn convert(file: &KerasFile, options: &Options) -> Result<ModelProto, KerasError> {
    let opset = options.opset.unwrap_or(DEFAULT_OPSET);
    if !OPSETS.contains(&opset) {
        return Err(KerasError::Opset(opset));
    }
    model::convert_model(file, opset, options)
}

/// Converts and serialises to ONNX protobuf bytes.
pub fn convert_to_bytes(path: &Path, options: &Options) -> Result<Vec<u8>, KerasError> {
    Ok(convert_file(path, options)?.encode_to_vec())
}
