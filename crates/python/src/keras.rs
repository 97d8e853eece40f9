//! `runnx._runnx.convert_keras`: Keras (.h5, .keras) to ONNX bytes, over `runnx_keras`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use runnx_keras::{KerasError, Options};

use crate::errors::{INVALID_ARGUMENT, NOT_IMPLEMENTED, NO_SUCH_FILE};

/// Converts the Keras model at `path` and returns the serialised ONNX model.
#[pyfunction]
#[pyo3(signature = (path, opset=None, inputs_as_nchw=None))]
pub fn convert_keras<'py>(
    py: Python<'py>,
    path: PathBuf,
    opset: Option<i64>,
    inputs_as_nchw: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let options = Options {
        opset,
        inputs_as_nchw: inputs_as_nchw.unwrap_or_default(),
    };
    let bytes = py
        .detach(|| runnx_keras::convert_to_bytes(&path, &options))
        .map_err(|e| {
            let message = format!("{}: {e}", path.display());
            match e {
                KerasError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    NO_SUCH_FILE.err(message)
                }
                KerasError::Layer { .. } => NOT_IMPLEMENTED.err(message),
                _ => INVALID_ARGUMENT.err(message),
            }
        })?;
    Ok(PyBytes::new(py, &bytes))
}
