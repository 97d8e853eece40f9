//! `runnx._runnx`: the compiled half of the `runnx` Python module.
//!
//! It holds a session class over `runnx_runtime::Session`, the numpy conversions and the
//! exception classes. The onnxruntime-compatible API (`InferenceSession`, `SessionOptions`,
//! providers, `runnx.backend`) is plain Python in `python/runnx` on top of it. This crate uses
//! the runtime's public API only (and the ops' error type, to classify errors): it knows nothing
//! about kernels or planning. `convert_keras` is a thin shell over `runnx_keras`.

mod convert;
mod errors;
mod keras;
mod session;

use pyo3::prelude::*;

#[pymodule]
fn _runnx(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::init(module)?;
    module.add_class::<session::PySession>()?;
    module.add_function(wrap_pyfunction!(keras::convert_keras, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
