use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use crate::external::ExternalDataResolver;
use crate::proto::ModelProto;
use crate::{FormatError, Result};

/// A decoded model together with what is needed to resolve its external data.
pub struct LoadedModel {
    pub proto: ModelProto,
    /// Resolves `data_location = EXTERNAL` tensors relative to the model's folder.
    /// Models loaded from bytes have no folder and refuse external data.
    pub external: ExternalDataResolver,
}

/// Memory-maps `path` and decodes it. Tensor bytes stay views of the mapping: nothing is copied.
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    let io_err = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let bytes = if len == 0 {
        Bytes::new()
    } else {
        // SAFETY: the mapping is read-only; like every mmap-based loader we rely on the file not
        // being truncated while the model is alive.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Bytes::from_owner(map)
    };
    let proto = decode_model(bytes, &path.display().to_string())?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedModel {
        proto,
        external: ExternalDataResolver::new(Some(dir)),
    })
}

/// Decodes a model from memory. `what` names the source in error messages.
pub fn decode_model(bytes: Bytes, what: &str) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(FormatError::Decode {
            what: what.to_string(),
            message: "the file is empty".into(),
        });
    }
    let proto = ModelProto::decode(bytes).map_err(|e| FormatError::Decode {
        what: what.to_string(),
        message: format!("protobuf decoding failed ({e})"),
    })?;
    // A random byte string can decode as a message that is all unknown fields. A model has a
    // graph or at least declares an IR version; anything else is not an ONNX model.
    if proto.graph.is_none() && proto.ir_version.is_none() {
        return Err(FormatError::Decode {
            what: what.to_string(),
            message: "it has neither a graph nor an IR version".into(),
        });
    }
    Ok(proto)
}

impl LoadedModel {
    /// Decodes a model held in memory; external data is refused (there is no folder to resolve it in).
    pub fn from_bytes(bytes: Bytes) -> Result<Self> {
        Ok(LoadedModel {
            proto: decode_model(bytes, "model bytes")?,
            external: ExternalDataResolver::new(None),
        })
    }
}

/// Encodes `model` and writes it to `path`.
pub fn save_model(model: &ModelProto, path: &Path) -> Result<()> {
    std::fs::write(path, model.encode_to_vec()).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })
}
