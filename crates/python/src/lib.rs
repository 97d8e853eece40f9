//! `runnx._runnx`: the compiled half of the `runnx` Python module.
//!
//! It holds a session class over `runnx_runtime::Session`, the numpy conversions and the
//! exception classes. The onnxruntime-compatible API (`InferenceSession`, `SessionOptions`,
//! providers, `runnx.backend`) is plain Python in `python/runnx` on top of it. This crate uses
//! the runtime's public API only (and the ops' error type, to classify errors): it knows nothing
//! about kernels or planning. `convert_keras` is a thin shell over `runnx_keras`, and the `tools_*` functions over the model
//! tools (`runnx-tools`, `runnx-shapes`).

mod convert;
mod errors;
mod keras;
mod session;
mod tools;

use pyo3::prelude::*;

/// mimalloc keeps freed memory for reuse, so a session's activations do not page-fault in again
/// on every run as they do with glibc's malloc, which unmaps every block over 128 KiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _runnx(module: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::init(module)?;
    module.add_class::<session::PySession>()?;
    module.add_function(wrap_pyfunction!(keras::convert_keras, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_check_model, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_infer_shapes, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_optimize_model, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_print_model, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_parse_model, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_export_weights, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_diff_weights, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_patch_weights, module)?)?;
    module.add_function(wrap_pyfunction!(tools::tools_convert_opset, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
